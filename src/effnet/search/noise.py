"""When a search or study may name a winner: only when its top model beats the runner-up beyond their noise.

The noise of a model's accuracy is the standard error of its mean over the training seeds (sd / sqrt(seeds)),
but never less than the validation sampling error sqrt(p (1 - p) / n_val): every seed is scored on the same
validation images, so averaging seeds does not remove that error, and with one seed it is the only estimate.
Two models differ when their gap exceeds Z = 2 standard errors of the difference (about 95% two-sided), or, when
the error comes from a few seeds, Student's t quantile for that many seeds (4.3 for 3 seeds: an sd from three
runs is itself rough). A model sits at chance when it is within that noise of 1 / classes; when every model
does, nothing was learned and no ranking means anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z = 2.0  # standard errors a gap must exceed (normal approximation)
# Student's t 97.5% quantiles for 1..10 degrees of freedom (seeds - 1); beyond 11 seeds Z is close enough.
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def critical_value(seeds: int) -> float:
    """How many standard errors a gap must exceed: Z for one seed, Student's t (seeds - 1 df) for several."""
    if seeds <= 1:
        return Z
    return T_975[seeds - 2] if seeds - 1 <= len(T_975) else Z


@dataclass(frozen=True)
class Scored:
    """One model's accuracy: its name, mean top-1 over seeds, their sample sd (None with one seed) and count."""

    name: str
    accuracy: float
    sd: float | None = None
    seeds: int = 1


@dataclass(frozen=True)
class Verdict:
    """Whether the top model is a winner, and the one line that says why (or why not)."""

    winner: str | None  # the top model's name when it beats the runner-up beyond noise and chance, else None
    at_chance: bool  # every model within noise of chance
    gap: float | None  # top minus runner-up accuracy (None with one model)
    noise: float  # critical_value standard errors of that gap (of the top model alone without a runner-up)
    basis: str  # what the noise was estimated from
    message: str


def _errors(model: Scored, n_val: int) -> tuple[float, float]:
    """(standard error over seeds (0 with one seed), validation sampling error) of a model's mean accuracy."""
    p = min(max(model.accuracy, 0.0), 1.0)
    sampling = math.sqrt(max(p * (1 - p), 1.0 / n_val) / n_val)  # never 0, even at 0% or 100%
    over_seeds = model.sd / math.sqrt(model.seeds) if model.sd is not None and model.seeds > 1 else 0.0
    return over_seeds, sampling


def standard_error(model: Scored, n_val: int) -> float:
    """The standard error of a model's mean accuracy: over seeds, floored by the validation sampling error."""
    return max(_errors(model, n_val))


def critical_for(models: Sequence[Scored], n_val: int) -> float:
    """Student's t for the seeds when a seed sd sets some model's error (it is estimated), else Z."""
    seeded = [model.seeds for model in models if _errors(model, n_val)[0] > _errors(model, n_val)[1]]
    return critical_value(max(seeded)) if seeded else Z


def _basis(models: Sequence[Scored], n_val: int) -> str:
    seeds = max(model.seeds for model in models)
    sampled = f"the validation sampling error of {n_val} images"
    return f"the sd over {seeds} seeds, at least {sampled}" if seeds > 1 else sampled


def judge(models: Sequence[Scored], n_val: int, num_classes: int) -> Verdict:
    """The verdict over `models` (finished ones only) scored on `n_val` validation images of `num_classes`."""
    if not models:
        raise ValueError("no finished model to judge")
    if n_val < 1 or num_classes < 2:
        raise ValueError(f"need n_val >= 1 and num_classes >= 2, got {n_val} and {num_classes}")
    ranked = sorted(models, key=lambda model: -model.accuracy)
    top, basis = ranked[0], _basis(models, n_val)
    chance = 1.0 / num_classes
    chance_noise = math.sqrt(chance * (1 - chance) / n_val)
    at_chance = all(
        model.accuracy - chance <= critical_for([model], n_val) * math.hypot(standard_error(model, n_val), chance_noise)
        for model in ranked
    )
    z = critical_for(ranked[:2], n_val)
    if at_chance:
        best = f"{100 * top.accuracy:.1f}%"
        message = (f"no winner: every model is within noise of chance ({100 * chance:.1f}% for {num_classes} "
                   f"classes; best {best}, noise from {basis}): nothing was learned, so the ranking means nothing; "
                   "train longer (--epochs) or on more data before choosing")  # fmt: skip
        return Verdict(None, True, None, z * chance_noise, basis, message)
    if len(ranked) == 1:
        return Verdict(top.name, False, None, z * standard_error(top, n_val), basis, f"{top.name} (the only model)")
    second = ranked[1]
    gap = top.accuracy - second.accuracy
    noise = z * math.hypot(standard_error(top, n_val), standard_error(second, n_val))
    if gap > noise:
        message = f"{top.name} beats {second.name} by {100 * gap:.1f} points (noise {100 * noise:.1f}, from {basis})"
        return Verdict(top.name, False, gap, noise, basis, message)
    message = (
        f"no winner: {top.name} ({100 * top.accuracy:.1f}%) and {second.name} ({100 * second.accuracy:.1f}%)"
        f" differ by {100 * gap:.1f} points, within their noise ({100 * noise:.1f} = {z:g} standard errors "
        f"of the difference, from {basis}); add seeds (--seeds 0 1 2), validation images or epochs"
    )
    return Verdict(None, False, gap, noise, basis, message)
