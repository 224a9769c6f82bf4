"""Backbone use by tools effnet did not write: timm's habits, torch.fx feature extraction, torchvision detection."""

from collections import OrderedDict

import pytest
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.rpn import AnchorGenerator
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

import effnet
from effnet.models.net import EfficientNetFeatures


def test_features_only_is_head_free_with_timm_feature_info():
    backbone = effnet.create_model("efficientnet_b0", features_only=True, out_indices=(1, 2, 4))
    assert isinstance(backbone, EfficientNetFeatures)
    info = backbone.feature_info
    assert info.channels() == [24, 40, 320] and info.reduction() == [4, 8, 32]
    assert info.module_name() == ["stages.1", "stages.2", "stages.6"]
    assert info[0]["num_chs"] == 24 and info.channels(1) == 40
    names = {name.split(".")[0] for name, _ in backbone.named_parameters()}
    assert names == {"stem", "stages"}  # no head conv, no classifier
    maps = backbone.eval()(torch.randn(2, 3, 64, 64))
    assert [tuple(m.shape[1:]) for m in maps] == [(24, 16, 16), (40, 8, 8), (320, 2, 2)]
    # The same modules as the full model: its maps and its weights carry over.
    full = effnet.create_model("efficientnet_b0").eval()
    full.load_state_dict(backbone.state_dict(), strict=False)
    torch.testing.assert_close(full.feature_maps(torch.ones(1, 3, 64, 64))[4], backbone(torch.ones(1, 3, 64, 64))[2])


def test_features_only_cuts_unused_stages_and_checks_indices():
    backbone = effnet.create_model("efficientnet_b0", features_only=True, out_indices=(0, 1))
    assert len(backbone.stages) == 2  # stages 2..6 would get no gradient
    with pytest.raises(ValueError, match="out of range"):
        effnet.create_model("efficientnet_b0", features_only=True, out_indices=(5,))
    with pytest.raises(ValueError, match="features_only=True"):
        effnet.create_model("efficientnet_b0", out_indices=(1,))
    with pytest.raises(ValueError, match="expected 3 input channels"):
        backbone(torch.randn(1, 1, 64, 64))


def test_reset_classifier_global_pool_and_get_classifier():
    model = effnet.create_model("efficientnet_b0").eval()
    assert model.get_classifier() is model.classifier and model.get_classifier().out_features == 1000
    model.reset_classifier(7, global_pool="max")
    x = torch.randn(2, 3, 64, 64)
    assert model(x).shape == (2, 7)
    torch.testing.assert_close(
        model.forward_head(model.forward_features(x), pre_logits=True), model.forward_features(x).amax((2, 3))
    )
    model.reset_classifier(0, global_pool="")
    assert model(x).shape == (2, 1280, 2, 2)
    with pytest.raises(ValueError, match="needs num_classes=0"):
        model.reset_classifier(3, global_pool="")
    with pytest.raises(ValueError, match="global_pool must be one of"):
        model.reset_classifier(3, global_pool="median")


@pytest.mark.parametrize("padding", ["symmetric", "same"])
def test_fx_feature_extractor_matches_feature_maps(padding):
    model = effnet.create_model("efficientnet_lite0", padding=padding).eval()
    nodes = {name: str(i) for i, name in enumerate(model.feature_info.module_name())}
    extractor = create_feature_extractor(model, return_nodes=nodes).eval()
    x = torch.randn(1, 3, 70, 66)  # odd sizes: TF "SAME" padding differs per size and must stay dynamic
    with torch.no_grad():
        for got, want in zip(extractor(x).values(), model.feature_maps(x), strict=True):
            torch.testing.assert_close(got, want)


class _EffnetFPN(nn.Module):
    """The effnet backbone + torchvision's FPN, shaped as torchvision's detectors expect (`out_channels`)."""

    def __init__(self, out_channels: int = 32) -> None:
        super().__init__()
        self.body = effnet.create_model("efficientnet_b0", features_only=True, out_indices=(2, 3, 4))
        self.fpn = FeaturePyramidNetwork(self.body.feature_info.channels(), out_channels, LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.fpn(OrderedDict((str(i), level) for i, level in enumerate(self.body(x))))


def test_faster_rcnn_with_effnet_fpn_trains_and_detects():
    torch.manual_seed(0)
    levels = 4  # three backbone levels + the FPN's max-pool level
    detector = FasterRCNN(
        _EffnetFPN(),
        num_classes=3,
        min_size=96,
        max_size=96,
        rpn_anchor_generator=AnchorGenerator(((16,), (32,), (64,), (96,)), ((0.5, 1.0, 2.0),) * levels),
        box_roi_pool=MultiScaleRoIAlign(["0", "1", "2"], output_size=7, sampling_ratio=2),
        representation_size=64,
        rpn_batch_size_per_image=32,
        box_batch_size_per_image=16,
    )
    images = [torch.rand(3, 96, 96), torch.rand(3, 96, 96)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[30.0, 20.0, 90.0, 80.0], [5.0, 5.0, 40.0, 30.0]]), "labels": torch.tensor([2, 1])},
    ]
    detector.train()
    losses = detector(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(loss) for loss in losses.values())
    sum(losses.values()).backward()
    no_grad = [name for name, p in detector.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
    detector.eval()
    with torch.no_grad():
        detections = detector(images)
    assert len(detections) == 2 and detections[0]["boxes"].shape[1] == 4
    assert set(detections[0]) == {"boxes", "labels", "scores"}
