"""Step 1 of compound scaling: the grid of (alpha, beta, gamma) with alpha * beta^2 * gamma^2 ~= target."""

from __future__ import annotations

import math
from dataclasses import dataclass

from effnet.models.scaling import check_coefficients


@dataclass(frozen=True)
class GridConfig:
    """Ranges (inclusive) and step of the coefficient grid, and the multiply-add growth each candidate keeps.

    The defaults give 13 candidates (a default search fits in 30 minutes on 2 cores); the paper's
    (1.2, 1.1, 1.15) lies inside the ranges, between grid points.
    """

    alpha: tuple[float, float] = (1.0, 1.5)
    beta: tuple[float, float] = (1.0, 1.3)
    gamma: tuple[float, float] = (1.0, 1.3)
    step: float = 0.1
    target: float = 2.0  # multiply-adds grow by ~target per unit phi
    tolerance: float = 0.05  # relative: keep |alpha*beta^2*gamma^2 / target - 1| <= tolerance
    max_candidates: int = 500  # a guard against a typo'd step training thousands of models

    def __post_init__(self) -> None:
        for label in ("alpha", "beta", "gamma"):
            low, high = getattr(self, label)
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ValueError(f"{label} range must be finite numbers, got ({low}, {high})")
            if low < 1:
                raise ValueError(
                    f"{label} range starts at {low} < 1: compound scaling grows every dimension, so each "
                    f"coefficient must be >= 1; use e.g. --{label} 1.0 {max(high, 1.0):g}"
                )
            if high < low:
                raise ValueError(f"{label} range ({low}, {high}) is reversed; give it as LOW HIGH")
        if not math.isfinite(self.step) or self.step <= 0:
            raise ValueError(f"step must be a number > 0 (e.g. 0.05), got {self.step}")
        if not math.isfinite(self.target) or self.target <= 1:
            raise ValueError(
                f"target must be > 1 (the multiply-add growth per unit phi, 2 in the paper), got {self.target}"
            )
        if not 0 < self.tolerance < 1:
            raise ValueError(f"tolerance must be in (0, 1), e.g. 0.05 for 5%, got {self.tolerance}")


@dataclass(frozen=True)
class Candidate:
    """One grid point: depth (alpha), width (beta) and resolution (gamma) multipliers at phi = 1."""

    alpha: float
    beta: float
    gamma: float

    @property
    def ratio(self) -> float:
        """alpha * beta^2 * gamma^2: the multiply-add growth the formula predicts."""
        return self.alpha * self.beta**2 * self.gamma**2

    @property
    def trial_id(self) -> str:
        """Stable name, used as the journal key."""
        return f"a{self.alpha:.3f}-b{self.beta:.3f}-g{self.gamma:.3f}"


def _points(low: float, high: float, step: float) -> list[float]:
    # Integer steps, rounded, so 1.0 + 3 * 0.1 is exactly 1.3 and the upper bound is not lost to float error.
    count = int(math.floor((high - low) / step + 1e-9))
    return [round(low + i * step, 6) for i in range(count + 1)]


# Grid points tested (not trained) before the tolerance filter: a million take about a second; a typo'd step
# (1e-6 over a 0.5 range: 1e17 points) would otherwise hang before max_candidates is ever checked.
MAX_GRID_POINTS = 1_000_000


def make_grid(config: GridConfig) -> list[Candidate]:
    """Every grid point whose alpha * beta^2 * gamma^2 is within the tolerance of the target."""
    points = math.prod(
        math.floor((high - low) / config.step + 1e-9) + 1 for low, high in (config.alpha, config.beta, config.gamma)
    )
    if points > MAX_GRID_POINTS:
        raise ValueError(
            f"step {config.step:g} makes a grid of {points:.3g} points over alpha {config.alpha}, beta {config.beta},"
            f" gamma {config.gamma} (at most {MAX_GRID_POINTS:,}); use a larger --step or narrower ranges"
        )
    candidates = []
    for alpha in _points(*config.alpha, config.step):
        for beta in _points(*config.beta, config.step):
            for gamma in _points(*config.gamma, config.step):
                candidate = Candidate(alpha, beta, gamma)
                if abs(candidate.ratio / config.target - 1) <= config.tolerance:
                    # Same rule compound_scale enforces, so every candidate can be fed to `effnet scale`.
                    check_coefficients(alpha, beta, gamma, target=config.target, tolerance=config.tolerance)
                    candidates.append(candidate)
    if not candidates:
        raise ValueError(
            f"no (alpha, beta, gamma) in alpha {config.alpha}, beta {config.beta}, gamma {config.gamma} at step "
            f"{config.step} has alpha*beta^2*gamma^2 within {config.tolerance:.0%} of {config.target:g}; widen "
            "the ranges, use a smaller --step or a larger --tolerance"
        )
    if len(candidates) > config.max_candidates:
        raise ValueError(
            f"the grid has {len(candidates)} candidates, more than max_candidates={config.max_candidates}; use a "
            "larger --step, narrower ranges or a smaller --tolerance (or raise --max-candidates)"
        )
    return candidates
