"""Conv -> BatchNorm -> activation, the unit every EfficientNet block is made of."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from effnet.models.layers.activations import batch_norm_silu, fused_path_applies
from effnet.models.layers.padding import create_conv2d

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,  # the paper's Swish
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,  # Lite: quantization friendly
    "hardswish": nn.Hardswish,
}


def create_activation(name: str) -> nn.Module:
    """Activation module by name (silu, relu, relu6, hardswish)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name](inplace=True) if name != "hardswish" else nn.Hardswish()


@dataclass(frozen=True)
class LayerConfig:
    """What every conv-norm-act in one network shares: activation, BN settings and padding mode."""

    activation: str = "silu"
    norm_eps: float = 1e-3
    norm_momentum: float = 0.01
    padding: str = "symmetric"


class ConvNormAct(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + optional activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        layer: LayerConfig = LayerConfig(),
        act: bool = True,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.conv = create_conv2d(
            in_channels, out_channels, kernel_size, stride, groups, padding=layer.padding, dilation=dilation
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=layer.norm_eps, momentum=layer.norm_momentum)
        self.act = create_activation(layer.activation) if act else nn.Identity()
        # Set by use_memory_efficient_activations (--memory-efficient-act).
        self.memory_efficient = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.memory_efficient and fused_path_applies(self.bn, self.act, x):
            return batch_norm_silu(x, self.bn)  # type: ignore[arg-type]
        return self.act(self.bn(x))


def use_memory_efficient_activations(model: nn.Module) -> int:
    """Let every conv-BN-SiLU unit of `model` use `batch_norm_silu` in training; returns how many were switched."""
    switched = 0
    for module in model.modules():
        if isinstance(module, ConvNormAct) and isinstance(module.act, nn.SiLU):
            module.memory_efficient = True
            switched += 1
    return switched
