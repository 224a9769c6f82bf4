"""Options a run leaves to the model: filled in from the model family's reference recipe before anything is built."""

from __future__ import annotations

from effnet.data.autoaugment import reference_augment
from effnet.models.specs import NetSpec
from effnet.preprocess import uses_v2_preprocessing
from effnet.train.config import TrainConfig


def with_reference_defaults(cfg: TrainConfig, spec: NetSpec) -> TrainConfig:
    """`cfg` with augment="reference" and randaugment_magnitude / mix_mode None made concrete.

    The policy and magnitude come from `effnet.data.reference_augment(spec.name)` (e.g. AutoAugment policy_v0 for
    B0-B7, RandAugment M=15 for V2-M); mixup/cutmix per sample for the V2 release's models, per batch otherwise.
    (interpolation None is left to the model's preprocessing: its weights', or its family's.)
    """
    table = reference_augment(spec.name)
    v2 = uses_v2_preprocessing(spec)
    return cfg.replace(
        augment=table.augment if cfg.augment == "reference" else cfg.augment,
        randaugment_magnitude=(table.magnitude if cfg.randaugment_magnitude is None else cfg.randaugment_magnitude),
        mix_mode=cfg.mix_mode or ("per_sample" if v2 else "batch"),
    )
