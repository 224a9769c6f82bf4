"""Measured cost of a spec for the search and study (effnet.complexity), and pixel-exact scaling for proxies."""

from __future__ import annotations

from effnet.complexity import profile
from effnet.scaling import scale
from effnet.specs import NetSpec


def count_macs(spec: NetSpec, resolution: int | None = None, *, num_classes: int = 1000) -> int:
    """Multiply-adds (conv + linear) of one image at `resolution` (default: the spec's native resolution).

    effnet.complexity caches by architecture, so bisection steps that round to the same network are counted once.
    """
    return profile(spec, None if resolution is None else int(resolution), num_classes).macs


def count_params(spec: NetSpec, *, num_classes: int = 1000) -> int:
    """Number of parameters of the model built from `spec`."""
    return profile(spec, num_classes=num_classes).params


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
    return scale(
        base,
        width=width,
        depth=depth,
        resolution=resolution,
        name=name,
        depth_rounding=depth_rounding,
        resolution_divisor=1,
    )
