"""Compound model scaling (Tan & Le 2019, section 3.3) as pure functions on specs.

depth x alpha^phi, width x beta^phi, resolution x gamma^phi with alpha * beta^2 * gamma^2 ~= 2, so multiply-adds
grow by about 2^phi. `compound_scale` is the formula; `PUBLISHED` is the rounded table B1..B8/L2 were released
with, which does *not* follow the formula exactly. Both are offered; neither pretends to be the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from effnet.models.specs import NetSpec

ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15  # the paper's grid search at phi = 1 on B0
# Beyond these a network has billions of parameters (building it runs out of memory) or a few-pixel input.
PHI_RANGE = (-10.0, 12.0)


def round_channels(channels: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """Nearest multiple of `divisor` (at least `divisor`), bumped up if rounding lost more than 1 - round_limit."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if rounded < round_limit * channels:
        rounded += divisor
    return rounded


DEPTH_ROUNDING = ("ceil", "round")


def round_repeats(num_layers: int, depth: float, rounding: str = "ceil") -> int:
    """Scaled repeats of one stage: ceil (the TF reference) or nearest; never fewer than one block.

    ceil is what B1..B7 were built with, but it adds a whole block to every 1-block stage as soon as depth > 1,
    so small phi overshoot 2^phi multiply-adds (B0 at phi=0.5: 1.9x instead of 1.41x); "round" tracks 2^phi
    within ~10% at every phi.
    """
    if rounding == "ceil":
        return max(1, int(math.ceil(num_layers * depth)))
    if rounding == "round":
        return max(1, int(math.floor(num_layers * depth + 0.5)))
    raise ValueError(f"depth rounding must be one of {DEPTH_ROUNDING}, got {rounding!r}")


def round_resolution(resolution: float, divisor: int = 8) -> int:
    """Nearest multiple of `divisor` pixels (at least 32, the networks' output stride)."""
    if divisor < 1:
        raise ValueError(f"resolution divisor must be a positive number of pixels, got {divisor}")
    return max(32, int(math.floor(resolution / divisor + 0.5)) * divisor)


# Upper bounds of explicit multipliers, far beyond any published model (L2: width 4.3, depth 5.3; phi 12 at the
# paper's coefficients: width 3.1, depth 8.9, resolution 5.4) but below what overflows memory or tensor sizes.
MAX_MULTIPLIER = {"width": 16.0, "depth": 64.0, "resolution": 32.0}


def _check_multiplier(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} multiplier must be a finite number > 0, got {value!r}")
    if value > MAX_MULTIPLIER[name]:
        raise ValueError(f"{name} multiplier must be at most {MAX_MULTIPLIER[name]:g}, got {value:g}: larger networks "
                         "do not fit in memory (EfficientNet-L2 is width 4.3, depth 5.3)")


def scale(
    base: NetSpec,
    *,
    width: float = 1.0,
    depth: float = 1.0,
    resolution: float = 1.0,
    name: str | None = None,
    depth_rounding: str = "ceil",
    resolution_divisor: int = 8,
) -> NetSpec:
    """Scale `base` by explicit multipliers (single-dimension scaling when only one differs from 1).

    Resolutions round to multiples of `resolution_divisor` pixels; use 1 for small proxies, where a multiple of 8
    would map nearby multipliers (64 px x 1.05 and x 1.10) to the same size.
    """
    for label, value in (("width", width), ("depth", depth), ("resolution", resolution)):
        _check_multiplier(label, value)
    rules = base.rules

    def channels(c: int) -> int:
        return round_channels(c * width, rules.channel_divisor, rules.round_limit)

    stages = tuple(
        replace(
            stage,
            out_channels=channels(stage.out_channels),
            num_layers=stage.num_layers
            if i in rules.fixed_depth_stages
            else round_repeats(stage.num_layers, depth, depth_rounding),
        )
        for i, stage in enumerate(base.stages)
    )
    head = base.head_channels
    if head is not None and rules.scale_head:
        head = channels(head)
    return replace(
        base,
        name=name or f"{base.name}-w{width:g}-d{depth:g}-r{resolution:g}",
        stages=stages,
        stem_channels=channels(base.stem_channels) if rules.scale_stem else base.stem_channels,
        head_channels=head,
        resolution=round_resolution(base.resolution * resolution, resolution_divisor),
        train_resolution=None
        if base.train_resolution is None
        else round_resolution(base.train_resolution * resolution, resolution_divisor),
        width_mult=base.width_mult * width,
        depth_mult=base.depth_mult * depth,
    )


def check_coefficients(
    alpha: float,
    beta: float,
    gamma: float,
    *,
    target: float = 2.0,
    tolerance: float = 0.1,
    allow_any_ratio: bool = False,
) -> float:
    """Validate alpha, beta, gamma; returns alpha * beta^2 * gamma^2 (the multiply-add growth per unit phi)."""
    for label, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{label} must be a finite number, got {value!r}")
        if value < 1:
            raise ValueError(
                f"{label}={value} < 1: compound scaling grows every dimension (alpha, beta, gamma >= 1); "
                "to make a network smaller use a negative phi"
            )
    ratio = alpha * beta**2 * gamma**2
    if not allow_any_ratio and abs(ratio / target - 1) > tolerance:
        raise ValueError(
            f"alpha * beta^2 * gamma^2 = {ratio:.3f} is more than {tolerance:.0%} away from {target:g}, so "
            f"multiply-adds would not grow by ~{target:g}^phi; adjust alpha/beta/gamma or pass "
            "allow_any_ratio=True (--allow-any-ratio) if that is intended"
        )
    return ratio


def compound_scale(
    base: NetSpec,
    phi: float,
    alpha: float = ALPHA,
    beta: float = BETA,
    gamma: float = GAMMA,
    *,
    allow_any_ratio: bool = False,
    name: str | None = None,
    depth_rounding: str = "ceil",
    resolution_divisor: int = 8,
) -> NetSpec:
    """The paper's formula for any real phi (fractional, or negative for smaller-than-base networks)."""
    if not isinstance(phi, (int, float)) or not math.isfinite(phi):
        raise ValueError(f"phi must be a finite number, got {phi!r}")
    if not PHI_RANGE[0] <= phi <= PHI_RANGE[1]:
        raise ValueError(f"phi must be in [{PHI_RANGE[0]:g}, {PHI_RANGE[1]:g}], got {phi:g}: phi 12 is already "
                         "~4000x B0's multiply-adds (B7 is phi 6) and phi -10 shrinks the input to a few pixels")
    check_coefficients(alpha, beta, gamma, allow_any_ratio=allow_any_ratio)
    return scale(
        base,
        width=beta**phi,
        depth=alpha**phi,
        resolution=gamma**phi,
        name=name or f"{base.name}-phi{phi:g}",
        depth_rounding=depth_rounding,
        resolution_divisor=resolution_divisor,
    )


@dataclass(frozen=True)
class Coefficients:
    """One row of a published scaling table."""

    width: float
    depth: float
    resolution: int
    dropout: float


# As released with the TF reference code: rounded by hand from the formula, not equal to it
# (B1 is width 1.0, depth 1.1 rather than 1.1, 1.2). Use these to reproduce the released models.
PUBLISHED: dict[str, Coefficients] = {
    "b0": Coefficients(1.0, 1.0, 224, 0.2),
    "b1": Coefficients(1.0, 1.1, 240, 0.2),
    "b2": Coefficients(1.1, 1.2, 260, 0.3),
    "b3": Coefficients(1.2, 1.4, 300, 0.3),
    "b4": Coefficients(1.4, 1.8, 380, 0.4),
    "b5": Coefficients(1.6, 2.2, 456, 0.4),
    "b6": Coefficients(1.8, 2.6, 528, 0.5),
    "b7": Coefficients(2.0, 3.1, 600, 0.5),
    "b8": Coefficients(2.2, 3.6, 672, 0.5),
    "l2": Coefficients(4.3, 5.3, 800, 0.5),
}


def published_scale(base: NetSpec, coefficients: Coefficients, name: str) -> NetSpec:
    """Apply one published table row: its width/depth multipliers, exact resolution and dropout."""
    scaled = scale(base, width=coefficients.width, depth=coefficients.depth, name=name)
    return replace(scaled, resolution=coefficients.resolution, dropout=coefficients.dropout)
