"""Learning-rate schedules as pure functions of the global step (nothing to save or restore on resume)."""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("step", "cosine", "constant")


@dataclass(frozen=True)
class LRSchedule:
    """Linear warm-up, then TF's staircase decay (x decay_rate every decay_epochs), cosine, or constant."""

    base_lr: float
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int = 0
    kind: str = "step"
    decay_rate: float = 0.97
    decay_epochs: float = 2.4
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.kind!r}; choose one of {', '.join(SCHEDULES)}")
        if self.steps_per_epoch < 1 or self.total_steps < 1:
            raise ValueError(f"a schedule needs at least one step (got {self.steps_per_epoch} per epoch, "
                             f"{self.total_steps} in total); lower the batch size or use more data")
        if self.warmup_steps < 0 or self.decay_epochs <= 0:
            raise ValueError("warmup_steps must be >= 0 and decay_epochs > 0")

    def __call__(self, step: int) -> float:
        """Learning rate of optimizer step `step` (0-based)."""
        if step < self.warmup_steps:
            # (step + 1): the first step already learns instead of running at lr 0.
            return self.base_lr * (step + 1) / self.warmup_steps
        if self.kind == "step":
            # Like TF's exponential_decay(staircase=True), counted from step 0 (warm-up included).
            decay_steps = self.decay_epochs * self.steps_per_epoch
            return max(self.min_lr, self.base_lr * self.decay_rate ** math.floor(step / decay_steps))
        if self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * progress))
        return self.base_lr
