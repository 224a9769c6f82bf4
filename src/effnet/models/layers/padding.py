"""TensorFlow-compatible "SAME" padding, written so that it traces and exports to ONNX."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(size: int, kernel_size: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding TensorFlow's "SAME" adds to one spatial axis of length `size`."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel_size - 1) * dilation + 1 - size, 0)
    # TF puts the odd pixel after (right / bottom); PyTorch's symmetric padding cannot express that.
    return total // 2, total - total // 2


def _same_total(size: Any, kernel_size: int, stride: int, dilation: int) -> Any:
    # (ceil(size / stride) - 1) * stride == size - 1 - (size - 1) % stride, so the total is
    # span - 1 - (size - 1) % stride: only % and -, which work on ints, SymInts (torch.export with dynamic
    # shapes) and the 0-d tensors torch.jit tracing gives for sizes (ONNX with dynamic height/width).
    # It is never negative when span >= stride, which pad_same checks.
    span = (kernel_size - 1) * dilation + 1
    return span - 1 - (size - 1) % stride


def pad_same(
    x: torch.Tensor, kernel_size: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> torch.Tensor:
    """Pad (N, C, H, W) as TensorFlow's "SAME" would, computed from the input size at run time."""
    height, width = x.shape[-2], x.shape[-1]
    vertical = _same_total(height, kernel_size[0], stride[0], dilation[0])
    horizontal = _same_total(width, kernel_size[1], stride[1], dilation[1])
    return F.pad(x, (horizontal // 2, horizontal - horizontal // 2, vertical // 2, vertical - vertical // 2))


# A leaf for torch.fx: symbolic tracing (torchvision's create_feature_extractor) keeps the call instead of
# tracing the size arithmetic, which fx proxies cannot run.
torch.fx.wrap("pad_same")


class Conv2dSame(nn.Conv2d):
    """Conv2d with TF "SAME" padding computed from the input size at run time (any size, exportable)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        spans = [(k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation, strict=True)]
        if any(1 < span < stride for span, stride in zip(spans, self.stride, strict=True)):
            raise ValueError(f"TF 'SAME' padding needs kernel span >= stride or a 1x1 kernel, got {self}")
        # A 1x1 kernel never pads ("SAME" drops the trailing pixels instead), so it skips the run-time padding.
        self.needs_padding = any(span > 1 for span in spans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.needs_padding:
            x = pad_same(x, self.kernel_size, self.stride, self.dilation)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


PADDING_MODES = ("symmetric", "same")


def create_conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    bias: bool = False,
    padding: str = "symmetric",
    dilation: int = 1,
) -> nn.Conv2d:
    """A conv with PyTorch's symmetric padding (dilation * (k // 2)) or TF "SAME" padding.

    For stride 1 and an odd kernel both modes pad dilation * (k // 2) on each side, so "same" only pays for the
    run-time padding where it differs: strided convs.
    """
    if padding not in PADDING_MODES:
        raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}")
    if padding == "same" and stride > 1:
        return Conv2dSame(in_channels, out_channels, kernel_size, stride, 0, dilation, groups=groups, bias=bias)
    pad = dilation * (kernel_size // 2)
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad, dilation, groups=groups, bias=bias)
