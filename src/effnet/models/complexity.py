"""Parameters and multiply-adds per stage, measured with PyTorch's own counter on the meta device.

Building on the meta device allocates no memory and runs no arithmetic, so even L2 at 800 px is counted in
well under a second. Multiply-adds are FlopCounterMode's FLOPs / 2 (it counts a multiply-add as two FLOPs);
like the paper, that covers convolutions and linear layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from effnet.models.net import EfficientNet
from effnet.models.specs import NetSpec

# (params, multiply-adds at native resolution) as printed in the papers: EfficientNet Table 2 for B0..B7,
# EfficientNetV2 Table 7 for S/M/L/XL (evaluated at 384/480/480/512).
PAPER_FIGURES: dict[str, tuple[float, float]] = {
    "efficientnet_b0": (5.3e6, 0.39e9),
    "efficientnet_b1": (7.8e6, 0.70e9),
    "efficientnet_b2": (9.2e6, 1.0e9),
    "efficientnet_b3": (12e6, 1.8e9),
    "efficientnet_b4": (19e6, 4.2e9),
    "efficientnet_b5": (30e6, 9.9e9),
    "efficientnet_b6": (43e6, 19e9),
    "efficientnet_b7": (66e6, 37e9),
    "efficientnetv2_s": (22e6, 8.8e9),
    "efficientnetv2_m": (54e6, 24e9),
    "efficientnetv2_l": (120e6, 53e9),
    "efficientnetv2_xl": (208e6, 94e9),
}


@dataclass(frozen=True)
class PartCost:
    """Parameters and multiply-adds of one part of a network (stem, a stage, head, classifier)."""

    name: str
    params: int
    macs: int


@dataclass(frozen=True)
class Complexity:
    """A network's cost at one resolution, per part and in total."""

    name: str
    resolution: int
    parts: tuple[PartCost, ...]

    @property
    def params(self) -> int:
        """Total parameters."""
        return sum(part.params for part in self.parts)

    @property
    def macs(self) -> int:
        """Total multiply-adds for one image."""
        return sum(part.macs for part in self.parts)


def count_params(model: nn.Module) -> int:
    """Number of parameters (works on meta-device models)."""
    return sum(p.numel() for p in model.parameters())


def _measure(module: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, int]:
    with FlopCounterMode(display=False) as counter:
        out = module(x)
    return out, counter.get_total_flops() // 2


def profile(model: NetSpec | EfficientNet, resolution: int | None = None, num_classes: int = 1000) -> Complexity:
    """Count params and multiply-adds per part of a spec (or model) at `resolution` (default: native)."""
    spec = model.spec if isinstance(model, EfficientNet) else model
    if isinstance(model, EfficientNet):
        num_classes = model.num_classes
    resolution = resolution or spec.resolution
    if resolution < 32:
        raise ValueError(f"resolution must be at least 32 (the output stride), got {resolution}")
    # Only the architecture decides the cost: searches that revisit a network under another name hit the cache.
    architecture = spec.replace(name="", width_mult=1.0, depth_mult=1.0, resolution=resolution, train_resolution=None)
    return replace(_profile(architecture, resolution, num_classes), name=spec.name)


@lru_cache(maxsize=4096)
def _profile(spec: NetSpec, resolution: int, num_classes: int) -> Complexity:
    with torch.device("meta"):
        net = EfficientNet(spec, num_classes=num_classes).eval()
        x = torch.empty(1, spec.in_channels, resolution, resolution)
    parts = []
    with torch.no_grad():
        x, macs = _measure(nn.Sequential(net.stem, net.stem_pool), x)
        parts.append(PartCost("stem", count_params(net.stem), macs))
        for index, stage in enumerate(net.stages):
            x, macs = _measure(stage, x)
            parts.append(PartCost(f"stage {index}", count_params(stage), macs))
        x, macs = _measure(net.head, x)
        parts.append(PartCost("head", count_params(net.head), macs))
        _, macs = _measure(net.forward_head, x)
        parts.append(PartCost("classifier", count_params(net.classifier), macs))
    return Complexity(spec.name, resolution, tuple(parts))


def count_macs(spec: NetSpec, resolution: int | None = None, *, num_classes: int = 1000) -> int:
    """Total multiply-adds of one image through `spec` at `resolution` (default: native), classifier included."""
    return profile(spec, resolution, num_classes).macs
