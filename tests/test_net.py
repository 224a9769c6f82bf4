"""The network and its layers: SAME padding, drop path, input checks, backbone use, gradient checkpointing."""

import pytest
import timm.layers
import torch

import effnet
from effnet.models.layers import Conv2dSame, DropPath, create_conv2d, same_padding


def _tiny(num_classes=5, **overrides):
    spec = effnet.scale(effnet.get_spec("efficientnet_b0"), width=0.25, depth=0.34, resolution=0.3)
    return effnet.create_model(spec.replace(dropout=0.0, drop_path_rate=0.0, **overrides), num_classes=num_classes)


@pytest.mark.parametrize("size", [7, 8, 15, 16, 67])
@pytest.mark.parametrize(("kernel", "stride"), [(3, 1), (3, 2), (5, 2), (5, 1)])
def test_same_padding_matches_tensorflow_rule(size, kernel, stride):
    # TF: output = ceil(size / stride); the odd padding pixel goes after.
    before, after = same_padding(size, kernel, stride)
    assert (size + before + after - kernel) // stride + 1 == -(-size // stride)
    assert after - before in (0, 1)
    torch.manual_seed(0)
    ours = create_conv2d(4, 6, kernel, stride, padding="same")
    theirs = timm.layers.create_conv2d(4, 6, kernel, stride=stride, padding="same")  # an independent implementation
    theirs.load_state_dict(ours.state_dict(), strict=False)
    x = torch.randn(2, 4, size, size)
    assert torch.allclose(ours(x), theirs(x), atol=1e-6)
    assert isinstance(ours, Conv2dSame) == (stride > 1)


def test_same_padding_exports_to_onnx(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    conv = Conv2dSame(3, 4, 3, 2, bias=False).eval()
    x = torch.randn(1, 3, 33, 33)
    path = tmp_path / "conv.onnx"
    torch.onnx.export(conv, (x,), str(path), dynamo=False)
    session = onnxruntime.InferenceSession(str(path))
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert out.shape == (1, 4, 17, 17)
    assert abs(out - conv(x).detach().numpy()).max() < 1e-5


def test_drop_path_is_per_sample_and_rescaled():
    torch.manual_seed(0)
    layer = DropPath(0.25).train()
    out = layer(torch.ones(4000, 3, 2, 2))
    per_sample = out.flatten(1)
    kept = per_sample.unique()
    assert len(kept) == 2 and kept[0] == 0 and kept[1].item() == pytest.approx(1 / 0.75)
    assert (per_sample == per_sample[:, :1]).all()  # a whole sample is kept or dropped
    assert out.mean().item() == pytest.approx(1.0, abs=0.05)
    assert torch.equal(layer.eval()(torch.ones(2, 3)), torch.ones(2, 3))


def test_drop_path_rates_grow_linearly():
    model = effnet.create_model("efficientnet_b0")
    rates = [b.drop_path.drop_prob if hasattr(b.drop_path, "drop_prob") else None
             for stage in model.stages for b in stage]
    total = len(rates)
    for index, rate in enumerate(rates):
        if rate is not None:  # blocks without a skip connection have no drop path
            assert rate == pytest.approx(0.2 * index / total)


@pytest.mark.parametrize(
    ("shape", "message"),
    [((1, 1, 64, 64), "expected 3 input channels, got 1"), ((1, 4, 64, 64), "RGBA"),
     ((1, 3, 16, 64), "too small"), ((3, 64, 64), r"\(N, C, H, W\)")],
)
def test_bad_input_is_a_clear_error(shape, message):
    with pytest.raises(ValueError, match=message):
        _tiny()(torch.randn(*shape))


def test_unknown_model_suggests_names():
    with pytest.raises(ValueError, match="Did you mean efficientnet_b0"):
        effnet.create_model("efficientnet-b0")
    with pytest.raises(ValueError, match="list_models"):
        effnet.create_model("resnet9000x")


def test_feature_maps_strides_and_channels():
    model = effnet.create_model("efficientnet_b0").eval()
    with torch.no_grad():
        maps = model.feature_maps(torch.randn(1, 3, 64, 64))
    assert [m.shape[-1] for m in maps] == [32, 16, 8, 4, 2]  # strides 2, 4, 8, 16, 32
    assert [m.shape[1] for m in maps] == [16, 24, 40, 112, 320]
    assert [i["reduction"] for i in model.feature_info] == [2, 4, 8, 16, 32]


def test_reset_classifier_and_headless():
    model = _tiny(num_classes=5)
    model.reset_classifier(12)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 12)
    model.reset_classifier(0)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, model.num_features)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = _tiny().train()
    x = torch.randn(4, 3, 64, 64)
    model(x).square().mean().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).square().mean().backward()
    for a, p in zip(plain, model.parameters(), strict=True):
        assert torch.allclose(a, p.grad, atol=1e-6)


def test_every_family_runs_forward_and_backward():
    for name in ("efficientnetv2_b0", "efficientnet_lite0", "mobilenetv2", "resnet50"):
        spec = effnet.scale(effnet.get_spec(name), width=0.25, depth=0.3)
        model = effnet.create_model(spec, num_classes=3).train()
        out = model(torch.randn(2, 3, 64, 64))
        out.sum().backward()
        assert out.shape == (2, 3)


def test_preprocessing_is_exposed():
    model = effnet.create_model("efficientnet_b3")
    assert model.preprocess.input_size == 300
    assert model.preprocess.crop_pct == pytest.approx(300 / 332)
    assert model.preprocess.interpolation == "bicubic"
