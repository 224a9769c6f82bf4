"""The values a TrainConfig may take: each option's choices and range, checked alike from Python, flags or YAML."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from effnet._util.filecheck import MAX_NAME_CHARS, control_character
from effnet._util.validation import MAX_THREADS, check_range, image_side, thread_count, whole_number
from effnet.data.mixup import MIX_MODES
from effnet.data.transforms import AUGMENTS
from effnet.preprocess import interpolation_mode
from effnet.train.optim import OPTIMIZERS
from effnet.train.progressive import PROGRESSIVE_SCHEDULES
from effnet.train.schedule import SCHEDULES

AMP_DTYPES = ("bf16", "fp16")

# Upper bounds the checks below leave open: a value past them hangs (RandAugment applying a million ops to each
# image) or allocates without limit (a 100k px image) long before it can fail. The flags of `effnet train` use
# these same converters, so a value is refused alike from a flag, a YAML file or Python.
OPTION_BOUNDS: dict[str, Callable[[str], Any]] = {
    "image_size": image_side,
    "eval_size": image_side,
    "randaugment_magnitude": whole_number(0, 30),
    "randaugment_ops": whole_number(0, 16),
    "epochs": whole_number(1, 100_000),
    "batch_size": whole_number(1, 65_536),
    "threads": thread_count,
    "num_workers": whole_number(0, MAX_THREADS),
}
WHOLE = whole_number(-(2**31), 2**31 - 1)  # any other whole number: its own check says which part it takes
DEPTHWISE_INITS = ("reference", "pytorch")


def option_checks(cfg: Any) -> list[tuple[bool, str]]:
    """(ok, message) for every option of a TrainConfig: its choices, then its range."""
    return [*_choice_checks(cfg), *_count_checks(cfg), *_range_checks(cfg)]


def _choice_checks(cfg: Any) -> list[tuple[bool, str]]:
    """The options that name one of a few choices."""
    switches = [
        (getattr(cfg, name) in (True, False, "auto"), f"{name} must be auto, on or off, got {getattr(cfg, name)!r}")
        for name in ("channels_last", "compile", "tf32")
    ]
    return [
        (cfg.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {cfg.optimizer!r}"),
        (cfg.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {cfg.schedule!r}"),
        (
            cfg.amp in (None, "auto", *AMP_DTYPES),
            f"amp must be auto, {', '.join(AMP_DTYPES)} or off, got {cfg.amp!r}",
        ),
        *switches,
        (
            cfg.num_workers == "auto" or (isinstance(cfg.num_workers, int) and cfg.num_workers >= 0),
            f"num_workers must be auto or a number >= 0, got {cfg.num_workers!r}",
        ),
        (
            cfg.threads in (None, "auto") or (isinstance(cfg.threads, int) and cfg.threads >= 1),
            f"threads must be auto or a number >= 1, got {cfg.threads!r}",
        ),
        (
            cfg.progressive_schedule in PROGRESSIVE_SCHEDULES,
            f"progressive_schedule must be one of {PROGRESSIVE_SCHEDULES}, got {cfg.progressive_schedule!r}",
        ),
        (
            cfg.augment in (None, "none", "reference", *AUGMENTS),
            f"augment must be one of reference, {', '.join(AUGMENTS)} or none, got {cfg.augment!r}",
        ),
        (
            cfg.depthwise_init in DEPTHWISE_INITS,
            f"depthwise_init must be one of {DEPTHWISE_INITS}, got {cfg.depthwise_init!r}",
        ),
        (cfg.mix_mode in (None, *MIX_MODES), f"mix_mode must be one of {MIX_MODES}, got {cfg.mix_mode!r}"),
    ]


def _count_checks(cfg: Any) -> list[tuple[bool, str]]:
    """The sizes, counts and rates of the model and the loop."""
    return [
        (cfg.width > 0 and cfg.depth > 0, f"width and depth must be > 0, got {cfg.width}, {cfg.depth}"),
        (cfg.epochs >= 1, f"epochs must be >= 1, got {cfg.epochs}"),
        (cfg.batch_size >= 1, f"batch_size must be >= 1, got {cfg.batch_size}"),
        (cfg.min_steps >= 0, f"min_steps must be >= 0 (0 = off), got {cfg.min_steps}"),
        (cfg.lr is None or cfg.lr > 0, f"lr must be > 0, got {cfg.lr}"),
        (cfg.bn_momentum is None or 0 < cfg.bn_momentum <= 1, "bn_momentum must be in (0, 1]"),
        (0.0 <= cfg.ema_decay < 1.0, f"ema_decay must be in [0, 1) (0 = off), got {cfg.ema_decay}"),
        (0.0 <= cfg.label_smoothing < 1.0, f"label_smoothing must be in [0, 1), got {cfg.label_smoothing}"),
        (cfg.freeze_epochs >= 0, f"freeze_epochs must be >= 0, got {cfg.freeze_epochs}"),
        (cfg.frozen_stages >= -1, f"frozen_stages must be >= -1 (-1 = whole backbone), got {cfg.frozen_stages}"),
        (cfg.keep_last >= 1, f"keep_last must be >= 1, got {cfg.keep_last}"),
        (cfg.checkpoint_every_steps >= 0, "checkpoint_every_steps must be >= 0 (0 = per epoch only)"),
        (cfg.eval_every >= 1, f"eval_every must be >= 1, got {cfg.eval_every}"),
        (cfg.image_size is None or cfg.image_size >= 32, "image_size must be >= 32 (the network's stride)"),
        (cfg.eval_size is None or cfg.eval_size >= 32, "eval_size must be >= 32 (the network's stride)"),
    ]


_ON, _OFF = ("on", "true", "yes"), ("off", "false", "no")


def normalize_switches(cfg: Any) -> None:
    """Spelled-out switch values as data: on/off -> True/False, amp off/none/fp32 -> None (fp32)."""
    for name in ("channels_last", "compile", "tf32"):
        value = getattr(cfg, name)
        if isinstance(value, str) and value.lower() in _ON + _OFF:
            object.__setattr__(cfg, name, value.lower() in _ON)
    if isinstance(cfg.amp, str) and cfg.amp.lower() in ("off", "none", "fp32", "no", "false"):
        object.__setattr__(cfg, "amp", None)


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _range_checks(cfg: Any) -> list[tuple[bool, str]]:
    """(ok, message) for the values __post_init__'s own list does not cover."""
    if cfg.interpolation is not None:  # None: the model's own
        interpolation_mode(cfg.interpolation)  # raises with the valid names
    for option in fields(cfg):
        value = getattr(cfg, option.name)
        values = value if isinstance(value, tuple) else (value,)
        for item in values:
            if isinstance(item, int) and not isinstance(item, bool):
                check_range(item, option.name, OPTION_BOUNDS.get(option.name, WHOLE))
    for item in cfg.progressive_image_size or ():
        check_range(item, "progressive_image_size", image_side)
    low, high = cfg.crop_scale
    run_name = cfg.run_name
    return [
        (bool(_DEVICE.match(cfg.device)), f"device must be auto, cpu, mps, cuda or cuda:N, got {cfg.device!r}"),
        (cfg.weight_decay >= 0, f"weight_decay must be >= 0, got {cfg.weight_decay}"),
        (cfg.lr_per_256 > 0, f"lr_per_256 must be > 0, got {cfg.lr_per_256}"),
        (0 <= cfg.momentum < 1, f"momentum must be in [0, 1), got {cfg.momentum}"),
        (0 <= cfg.rmsprop_decay < 1, f"rmsprop_decay must be in [0, 1), got {cfg.rmsprop_decay}"),
        (cfg.rmsprop_eps > 0, f"rmsprop_eps must be > 0, got {cfg.rmsprop_eps}"),
        (cfg.warmup_epochs is None or cfg.warmup_epochs >= 0, "warmup_epochs must be >= 0"),
        (0 < cfg.decay_rate <= 1, f"decay_rate must be in (0, 1], got {cfg.decay_rate}"),
        (cfg.decay_epochs > 0, f"decay_epochs must be > 0, got {cfg.decay_epochs}"),
        (cfg.min_lr >= 0, f"min_lr must be >= 0, got {cfg.min_lr}"),
        (cfg.grad_clip is None or cfg.grad_clip > 0, f"grad_clip must be > 0 (or null), got {cfg.grad_clip}"),
        (cfg.dropout is None or 0 <= cfg.dropout < 1, f"dropout must be in [0, 1), got {cfg.dropout}"),
        (cfg.drop_path_rate is None or 0 <= cfg.drop_path_rate < 1, "drop_path_rate must be in [0, 1)"),
        (cfg.eval_crop_pct is None or 0 < cfg.eval_crop_pct <= 1, "eval_crop_pct must be in (0, 1]"),
        (0 < low <= high <= 1, f"crop_scale must be [min, max] with 0 < min <= max <= 1, got {cfg.crop_scale}"),
        (0 <= cfg.hflip <= 1, f"hflip must be a probability in [0, 1], got {cfg.hflip}"),
        (0 <= cfg.random_erasing <= 1, f"random_erasing must be in [0, 1], got {cfg.random_erasing}"),
        (cfg.mixup_alpha >= 0 and cfg.cutmix_alpha >= 0, "mixup_alpha and cutmix_alpha must be >= 0"),
        ((cfg.randaugment_magnitude or 0) >= 0 and cfg.randaugment_ops >= 0, "randaugment magnitude/ops must be >= 0"),
        (cfg.progressive_stages >= 1, f"progressive_stages must be >= 1, got {cfg.progressive_stages}"),
        (cfg.seed >= 0, f"seed must be >= 0, got {cfg.seed}"),
        (
            run_name is None or _safe_name(run_name),
            f"run_name must be a plain folder name (no '/', '..', leading '.' or control characters), got {run_name!r}",
        ),
    ]


def _safe_name(name: str) -> bool:
    # A newline or escape sequence in a run name would forge lines in every listing and log that prints it.
    return (
        bool(name)
        and name not in (".", "..")
        and not name.startswith(".")
        and "/" not in name
        and "\\" not in name
        and control_character(name) is None
        and len(name) <= MAX_NAME_CHARS
    )
