"""EfficientNetV2 progressive learning: image size and regularization grow together over N stages."""

from __future__ import annotations

from dataclasses import dataclass

from effnet.specs import NetSpec


@dataclass(frozen=True)
class ProgressiveRange:
    """(min, max) of each setting across the stages; the paper's Table 6 gives them per model size."""

    image_size: tuple[int, int]
    magnitude: tuple[float, float]  # RandAugment magnitude
    mixup_alpha: tuple[float, float]
    dropout: tuple[float, float]

    def __post_init__(self) -> None:
        for name in ("image_size", "magnitude", "mixup_alpha", "dropout"):
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

    def describe(self) -> str:
        """One log line."""
        span = (f"epoch {self.end_epoch}" if self.end_epoch - self.first_epoch == 1
                else f"epochs {self.first_epoch + 1}-{self.end_epoch}")
        return (
            f"stage {self.index + 1}: {span}, image {self.image_size}px, "
            f"RandAugment magnitude {self.magnitude}, mixup alpha {self.mixup_alpha:.3g}, dropout {self.dropout:.3g}"
        )


def size_class(spec: NetSpec) -> str:
    """Which Table 6 column a model falls in: 'l' for V2-L/XL, 'm' for V2-M, 's' for everything smaller."""
    name = spec.name.lower()
    if name.endswith(("_l", "_xl")):
        return "l"
    if name.endswith("_m"):
        return "m"
    return "s"


def default_range(spec: NetSpec, final_image_size: int) -> ProgressiveRange:
    """Table 6 for the model's size, with the size range rescaled to end at `final_image_size`.

    The paper starts at 128 px for a 300/380 px target; smaller targets keep the same min/max ratio.
    """
    table = TABLE6[size_class(spec)]
    low, high = table.image_size
    start = max(32, int(round(final_image_size * low / high)))
    return ProgressiveRange((min(start, final_image_size), final_image_size), table.magnitude,
                            table.mixup_alpha, table.dropout)


def _lerp(bounds: tuple[float, float], index: int, num_stages: int) -> float:
    if num_stages == 1:
        return float(bounds[1])
    return bounds[0] + (bounds[1] - bounds[0]) * index / (num_stages - 1)


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
                image_size=int(round(_lerp(schedule.image_size, index, num_stages))),
                magnitude=int(round(_lerp(schedule.magnitude, index, num_stages))),
                mixup_alpha=_lerp(schedule.mixup_alpha, index, num_stages),
                dropout=_lerp(schedule.dropout, index, num_stages),
            )
        )
    return stages


def stage_at(stages: list[ProgressiveStage], epoch: int) -> ProgressiveStage:
    """The stage that covers `epoch`."""
    for stage in stages:
        if stage.first_epoch <= epoch < stage.end_epoch:
            return stage
    raise ValueError(f"epoch {epoch} is outside the progressive schedule (0..{stages[-1].end_epoch - 1})")
