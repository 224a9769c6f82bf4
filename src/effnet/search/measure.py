"""Measured cost of a spec: multiply-adds at a resolution, counted on the meta device (no memory, no compute)."""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch.utils.flop_counter import FlopCounterMode

from effnet.net import EfficientNet
from effnet.scaling import scale
from effnet.specs import NetSpec


@lru_cache(maxsize=4096)
def _count(spec: NetSpec, resolution: int, num_classes: int) -> int:
    with torch.device("meta"):
        model = EfficientNet(spec, num_classes=num_classes).eval()
        image = torch.empty(1, spec.in_channels, resolution, resolution)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image)
    # The counter reports one multiply and one add per MAC.
    return counter.get_total_flops() // 2


def _architecture(spec: NetSpec, resolution: int) -> NetSpec:
    # The cache key keeps only what shapes the network: bisection steps that round to the same network (same
    # channels, repeats and pixels) but carry different names or multipliers are counted once.
    return spec.replace(name="", width_mult=1.0, depth_mult=1.0, resolution=resolution, train_resolution=None)


def count_macs(spec: NetSpec, resolution: int | None = None, *, num_classes: int = 1000) -> int:
    """Multiply-adds (conv + linear) of one image at `resolution` (default: the spec's native resolution)."""
    resolution = spec.resolution if resolution is None else int(resolution)
    if resolution < 32:
        raise ValueError(f"resolution must be at least 32 pixels (the output stride), got {resolution}")
    return _count(_architecture(spec, resolution), resolution, num_classes)


def count_params(spec: NetSpec, *, num_classes: int = 1000) -> int:
    """Number of parameters of the model built from `spec`."""
    return _params(_architecture(spec, spec.resolution), num_classes)


@lru_cache(maxsize=4096)
def _params(spec: NetSpec, num_classes: int) -> int:
    with torch.device("meta"):
        model = EfficientNet(spec, num_classes=num_classes)
    return sum(p.numel() for p in model.parameters())


def scale_exact(
    base: NetSpec,
    *,
    width: float = 1.0,
    depth: float = 1.0,
    resolution: float = 1.0,
    depth_rounding: str = "ceil",
    name: str | None = None,
) -> NetSpec:
    """`scale`, but resolution rounded to the pixel rather than to a multiple of 8.

    A small proxy (e.g. 64 px) would otherwise map gamma = 1.05 back to 64 px and 1.15 to 72 px, erasing the
    differences a grid search is meant to measure. Any input of at least 32 px runs through the network.
    """
    spec = scale(base, width=width, depth=depth, resolution=1.0, name=name, depth_rounding=depth_rounding)
    exact = max(32, int(math.floor(base.resolution * resolution + 0.5)))
    train = base.train_resolution
    return spec.replace(
        resolution=exact,
        train_resolution=None if train is None else max(32, int(math.floor(train * resolution + 0.5))),
    )
