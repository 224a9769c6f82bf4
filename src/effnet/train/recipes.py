"""Named training recipes: presets of TrainConfig values that flags and YAML values override."""

from __future__ import annotations

from typing import Any

# What a run of a few epochs wants that a 350-epoch recipe does not: no EMA (0.9999 would still be the initial
# weights), no RandAugment, mild crops and whole-image evaluation (an 8% crop or a center crop can miss the one
# object in an image), AdamW with a cosine decay, no stochastic depth, BN statistics that settle within a few
# hundred steps (PyTorch's momentum 0.1, not TF's 0.01), and a zero-initialized classifier: with few classes the
# TF head init (uniform +-1/sqrt(K)) starts above a loss of ln K, and AdamW needs ~100 steps just to shrink it.
# The one short-run recipe: the `quick` preset and the search/study trials (effnet.search.trial) both use it.
SHORT_RUN: dict[str, Any] = {
    "optimizer": "adamw",
    "lr": 3e-3,
    "weight_decay": 0.05,
    "schedule": "cosine",
    "warmup_epochs": 0.5,
    "label_smoothing": 0.1,
    "ema_decay": 0.0,
    "augment": None,
    "crop_scale": (0.8, 1.0),
    "eval_crop_pct": 1.0,
    "drop_path_rate": 0.0,
    "bn_momentum": 0.1,
    "zero_init_classifier": True,
}

# Named presets: a starting point that flags and YAML values override.
RECIPES: dict[str, dict[str, Any]] = {
    # The EfficientNet paper / TF reference on ImageNet (these are TrainConfig's own defaults).
    "paper": {},
    # Pretrained weights on a small labelled set (`--pretrained` / `--weights` imply it); each choice measured on
    # 800 real photos in docs/finetune.md. SGD at lr 0.08 per 256 images with a 10% warm-up and a cosine decay;
    # batch 32, halved while the run would take fewer than 60 steps; light regularization (label smoothing 0.1,
    # drop path 0.1, the model's dropout) and augmentation (crops of 35-100% of the image, flips, no RandAugment);
    # the backbone stays frozen with its BN statistics (more accurate than training it on this little data, and
    # no backward pass through it: a third of the time); `--frozen-stages 0` trains everything.
    "finetune": {
        "epochs": 10,
        "batch_size": 32,
        "min_steps": 60,
        "optimizer": "sgd",
        "lr_per_256": 0.08,
        "weight_decay": 1e-5,
        "schedule": "cosine",
        "warmup_epochs": None,
        "label_smoothing": 0.1,
        "drop_path_rate": 0.1,
        "augment": None,
        "crop_scale": (0.35, 1.0),
        "ema_decay": 0.0,
        "frozen_stages": -1,
    },
    # A few epochs on a small CPU: B0 at half width/depth, 96 px, batches of 25 (64 px reached 50.6 +- 3.2% over 3
    # seeds, 80 px with batches of 50 75.3 +- 7.8%: the outlines need the resolution, and a short run the steps),
    # with the short-run choices above and the reference depthwise init (PyTorch's helped one seed in three):
    # docs/training.md. `effnet train` without options uses it; search and study trials use SHORT_RUN and its
    # budget (epochs, batch) on their own 64 px proxy.
    "quick": {
        "width": 0.5,
        "depth": 0.5,
        "image_size": 96,
        "epochs": 6,
        "batch_size": 25,
        **SHORT_RUN,
        "depthwise_init": "reference",
    },
}
