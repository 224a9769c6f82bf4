"""Weight init as the TF reference: conv std sqrt(2 / (k*k*out/groups)), classifier uniform(+-1/sqrt(out))."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from effnet import create_model
from effnet.models.net import conv_init_std


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def _sample_tolerance(numel: int) -> float:
    # Relative standard error of a sample std is ~1/sqrt(2n); allow 6 of them plus float slack.
    return 6.0 / math.sqrt(2 * numel) + 1e-3


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnetv2_b0"])
def test_every_conv_has_the_reference_std(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name)
    for conv in _convs(model):
        expected = math.sqrt(2.0 / (conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels / conv.groups))
        assert conv_init_std(conv) == pytest.approx(expected)
        measured = conv.weight.std().item()
        assert measured == pytest.approx(expected, rel=_sample_tolerance(conv.weight.numel())), conv
        assert conv.weight.mean().abs().item() < 6 * expected / math.sqrt(conv.weight.numel())


def test_depthwise_672_channel_5x5_is_not_scaled_by_the_channel_count() -> None:
    torch.manual_seed(0)
    model = create_model("efficientnet_b0")
    depthwise = [c for c in _convs(model) if c.groups == 672 and c.kernel_size == (5, 5)]
    assert depthwise, "B0 has 672-channel 5x5 depthwise convs (stage 5)"
    for conv in depthwise:
        assert conv_init_std(conv) == pytest.approx(math.sqrt(2 / 25))  # 0.283, not sqrt(2 / (25 * 672)) = 0.0109
        assert conv.weight.std().item() == pytest.approx(0.2828, rel=0.05)


def test_classifier_uniform_bound_and_zero_biases() -> None:
    torch.manual_seed(0)
    model = create_model("efficientnet_b0", num_classes=1000)
    weight = model.classifier.weight
    bound = 1 / math.sqrt(1000)
    assert weight.abs().max().item() <= bound
    assert weight.abs().max().item() > 0.99 * bound  # 1.28M draws reach the edge
    assert weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.01)
    assert torch.count_nonzero(model.classifier.bias) == 0
    for conv in _convs(model):
        assert conv.bias is None or torch.count_nonzero(conv.bias) == 0


def test_same_std_as_timm_goog_init() -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ours = _convs(create_model("efficientnet_b0"))
    theirs = _convs(timm.create_model("efficientnet_b0"))
    assert [c.weight.shape for c in ours] == [c.weight.shape for c in theirs]
    for mine, ref in zip(ours, theirs, strict=True):
        measured = ref.weight.std().item()
        assert conv_init_std(mine) == pytest.approx(measured, rel=_sample_tolerance(ref.weight.numel())), ref
