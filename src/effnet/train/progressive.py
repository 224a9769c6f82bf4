"""EfficientNetV2 progressive learning: image size and regularization grow together over N stages.

Two schedules, because the paper and the released code differ (google/automl `efficientnetv2/main.py`,
`effnetv2_configs.py`, `hparams.py`):

- `paper` (Table 6): every setting goes linearly from its min at the first stage to its max at the last, so the
  first stage trains at 128 px; dropout grows (S: 0.1 -> 0.3), mixup only (no cutmix).
- `released`: stage i of N trains at int(128 + (final - 128) * (i + 1) / N) px, so the first of 4 stages is
  already at 171 px for S (300); RandAugment magnitude goes linspace(5, M) with the model's M (S 10, M 15, L 20),
  mixup *and* cutmix go linspace(0, alpha) (S 0, M 0.2, L 0.5), and dropout stays at the model's own rate (the
  code builds a dropout ramp and then deletes it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from effnet.models.specs import NetSpec


@dataclass(frozen=True)
class ProgressiveRange:
    """(min, max) of each setting across the stages; the paper's Table 6 gives them per model size."""

    image_size: tuple[int, int]
    magnitude: tuple[float, float]  # RandAugment magnitude
    mixup_alpha: tuple[float, float]
    dropout: tuple[float, float]
    cutmix_alpha: tuple[float, float] = (0.0, 0.0)
    # False (paper): the first stage trains at image_size[0]. True (released code): image_size[0] is the base the
    # sizes grow from, and stage i of N trains at base + (max - base) * (i + 1) / N, never at the base itself.
    size_from_base: bool = False

    def __post_init__(self) -> None:
        for name in ("image_size", "magnitude", "mixup_alpha", "dropout", "cutmix_alpha"):
            low, high = getattr(self, name)
            if low > high or low < 0:
                raise ValueError(f"progressive {name} range must be 0 <= min <= max, got ({low}, {high})")
        if self.image_size[0] < 32:
            raise ValueError(f"progressive image sizes must be >= 32 (the network's stride), got {self.image_size}")
        if self.dropout[1] >= 1:
            raise ValueError(f"progressive dropout must stay below 1, got {self.dropout}")


# EfficientNetV2 paper, Table 6 (min -> max over 4 stages).
TABLE6 = {
    "s": ProgressiveRange((128, 300), (5, 15), (0.0, 0.0), (0.1, 0.3)),
    "m": ProgressiveRange((128, 380), (5, 20), (0.0, 0.2), (0.1, 0.4)),
    "l": ProgressiveRange((128, 380), (5, 25), (0.0, 0.4), (0.1, 0.5)),
}

# google/automl efficientnetv2 as released: data.ibase = 128, train sizes 300 (S) / 384 (M, L, XL), RandAugment
# `ram` 10 / 15 / 20, mixup = cutmix alpha 0 / 0.2 / 0.5, dropout 0.2 / 0.3 / 0.4 held constant.
RELEASED = {
    "s": ProgressiveRange((128, 300), (5, 10), (0.0, 0.0), (0.2, 0.2), (0.0, 0.0), size_from_base=True),
    "m": ProgressiveRange((128, 384), (5, 15), (0.0, 0.2), (0.3, 0.3), (0.0, 0.2), size_from_base=True),
    "l": ProgressiveRange((128, 384), (5, 20), (0.0, 0.5), (0.4, 0.4), (0.0, 0.5), size_from_base=True),
}

PROGRESSIVE_SCHEDULES = ("paper", "released")


@dataclass(frozen=True)
class ProgressiveStage:
    """The settings used for epochs [first_epoch, end_epoch)."""

    index: int
    first_epoch: int
    end_epoch: int
    image_size: int
    magnitude: int
    mixup_alpha: float
    dropout: float
    cutmix_alpha: float = 0.0

    def describe(self) -> str:
        """One log line."""
        span = (f"epoch {self.end_epoch}" if self.end_epoch - self.first_epoch == 1
                else f"epochs {self.first_epoch + 1}-{self.end_epoch}")
        return (
            f"stage {self.index + 1}: {span}, image {self.image_size}px, "
            f"RandAugment magnitude {self.magnitude}, mixup alpha {self.mixup_alpha:.3g}"
            + (f", cutmix alpha {self.cutmix_alpha:.3g}" if self.cutmix_alpha else "")
            + f", dropout {self.dropout:.3g}"
        )


def size_class(spec: NetSpec) -> str:
    """Which Table 6 column a model falls in: 'l' for V2-L/XL, 'm' for V2-M, 's' for everything smaller."""
    name = spec.name.lower()
    if name.endswith(("_l", "_xl")):
        return "l"
    if name.endswith("_m"):
        return "m"
    return "s"


def default_range(spec: NetSpec, final_image_size: int, schedule: str = "paper") -> ProgressiveRange:
    """The `schedule`'s ranges for the model's size, the size range rescaled to end at `final_image_size`.

    Both schedules start from 128 px for a 300/380/384 px target; smaller targets keep the same ratio (floored
    at 32 px). The released schedule keeps the model's own dropout, as the released code does.
    """
    if schedule not in PROGRESSIVE_SCHEDULES:
        raise ValueError(f"unknown progressive schedule {schedule!r}; choose one of {', '.join(PROGRESSIVE_SCHEDULES)}")
    table = (TABLE6 if schedule == "paper" else RELEASED)[size_class(spec)]
    low, high = table.image_size
    start = min(max(32, int(round(final_image_size * low / high))), final_image_size)
    dropout = table.dropout if schedule == "paper" else (spec.dropout, spec.dropout)
    return replace(table, image_size=(start, final_image_size), dropout=dropout)


def _lerp(bounds: tuple[float, float], index: int, num_stages: int) -> float:
    if num_stages == 1:
        return float(bounds[1])
    return bounds[0] + (bounds[1] - bounds[0]) * index / (num_stages - 1)


def _stage_size(schedule: ProgressiveRange, index: int, num_stages: int) -> int:
    low, high = schedule.image_size
    if schedule.size_from_base:  # the released code's int(ibase + (size - ibase) * ratio)
        return int(low + (high - low) * (index + 1) / num_stages)
    return int(round(_lerp(schedule.image_size, index, num_stages)))


def progressive_stages(schedule: ProgressiveRange, epochs: int, num_stages: int = 4) -> list[ProgressiveStage]:
    """Split `epochs` into `num_stages` equal stages with linearly interpolated settings (empty stages dropped)."""
    if num_stages < 1:
        raise ValueError(f"progressive learning needs >= 1 stage, got {num_stages}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    stages = []
    for index in range(num_stages):
        first, end = index * epochs // num_stages, (index + 1) * epochs // num_stages
        if end == first:
            continue
        stages.append(
            ProgressiveStage(
                index=index,
                first_epoch=first,
                end_epoch=end,
                image_size=_stage_size(schedule, index, num_stages),
                magnitude=int(round(_lerp(schedule.magnitude, index, num_stages))),
                mixup_alpha=_lerp(schedule.mixup_alpha, index, num_stages),
                dropout=_lerp(schedule.dropout, index, num_stages),
                cutmix_alpha=_lerp(schedule.cutmix_alpha, index, num_stages),
            )
        )
    return stages


def stage_at(stages: list[ProgressiveStage], epoch: int) -> ProgressiveStage:
    """The stage that covers `epoch`."""
    for stage in stages:
        if stage.first_epoch <= epoch < stage.end_epoch:
            return stage
    raise ValueError(f"epoch {epoch} is outside the progressive schedule (0..{stages[-1].end_epoch - 1})")
