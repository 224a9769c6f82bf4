"""The residual blocks: MBConv (V1, V2 late stages), Fused-MBConv (V2 early stages) and ResNet's bottleneck.

All three share one signature so that a network can be built from a table of stages, whatever the block; their
kxk conv takes a `dilation` (backbones with output stride 8 / 16 trade the late strides for dilation).
"""

from __future__ import annotations

import torch
from torch import nn

from effnet.models.layers.conv_norm_act import ConvNormAct, LayerConfig, create_activation
from effnet.models.layers.drop_path import DropPath
from effnet.models.layers.squeeze_excite import SqueezeExcite


def _squeeze_excite(in_channels: int, mid_channels: int, se_ratio: float, layer: LayerConfig) -> nn.Module:
    if se_ratio <= 0:
        return nn.Identity()
    # The ratio applies to the block's *input* channels (the paper and the TF reference), not the expanded ones.
    return SqueezeExcite(mid_channels, max(1, int(in_channels * se_ratio)), layer.activation)


class _Residual(nn.Module):
    """Adds the identity shortcut (with stochastic depth) when the block keeps shape."""

    has_skip: bool
    drop_path: nn.Module

    def _init_skip(self, in_channels: int, out_channels: int, stride: int, drop_path_rate: float) -> None:
        self.has_skip = stride == 1 and in_channels == out_channels
        self.drop_path = DropPath(drop_path_rate) if self.has_skip and drop_path_rate > 0 else nn.Identity()

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        return x + self.drop_path(out) if self.has_skip else out


class MBConv(_Residual):
    """Inverted residual: 1x1 expand -> kxk depthwise -> SE -> 1x1 project (no expand when ratio is 1)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        expand_ratio: float,
        se_ratio: float,
        layer: LayerConfig,
        drop_path_rate: float = 0.0,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        mid = int(in_channels * expand_ratio)
        self.expand = ConvNormAct(in_channels, mid, 1, layer=layer) if expand_ratio != 1 else nn.Identity()
        self.dw = ConvNormAct(mid, mid, kernel_size, stride, groups=mid, layer=layer, dilation=dilation)
        self.se = _squeeze_excite(in_channels, mid, se_ratio, layer)
        self.project = ConvNormAct(mid, out_channels, 1, layer=layer, act=False)
        self._init_skip(in_channels, out_channels, stride, drop_path_rate)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.se(self.dw(self.expand(x))))


class FusedMBConv(_Residual):
    """EfficientNetV2's fused block: kxk expand conv -> SE -> 1x1 project; a single kxk conv when ratio is 1."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        expand_ratio: float,
        se_ratio: float,
        layer: LayerConfig,
        drop_path_rate: float = 0.0,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        mid = int(in_channels * expand_ratio)
        if expand_ratio == 1:
            self.expand = ConvNormAct(in_channels, out_channels, kernel_size, stride, layer=layer, dilation=dilation)
            self.se = _squeeze_excite(in_channels, out_channels, se_ratio, layer)
            self.project: nn.Module = nn.Identity()
        else:
            self.expand = ConvNormAct(in_channels, mid, kernel_size, stride, layer=layer, dilation=dilation)
            self.se = _squeeze_excite(in_channels, mid, se_ratio, layer)
            self.project = ConvNormAct(mid, out_channels, 1, layer=layer, act=False)
        self._init_skip(in_channels, out_channels, stride, drop_path_rate)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.se(self.expand(x)))


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3), so compound scaling can be applied to ResNet-50.

    `expand_ratio` is the bottleneck width relative to the output (0.25 in ResNet-50).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        expand_ratio: float,
        se_ratio: float,
        layer: LayerConfig,
        drop_path_rate: float = 0.0,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        mid = int(out_channels * expand_ratio)
        self.reduce = ConvNormAct(in_channels, mid, 1, layer=layer)
        self.conv = ConvNormAct(mid, mid, kernel_size, stride, layer=layer, dilation=dilation)
        self.se = _squeeze_excite(in_channels, mid, se_ratio, layer)
        self.expand = ConvNormAct(mid, out_channels, 1, layer=layer, act=False)
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut = (
            ConvNormAct(in_channels, out_channels, 1, stride, layer=layer, act=False)
            if needs_projection
            else nn.Identity()
        )
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.act = create_activation(layer.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(self.se(self.conv(self.reduce(x))))
        return self.act(self.shortcut(x) + self.drop_path(out))


BLOCKS: dict[str, type[nn.Module]] = {"mbconv": MBConv, "fused": FusedMBConv, "bottleneck": Bottleneck}
