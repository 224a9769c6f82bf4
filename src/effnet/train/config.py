"""TrainConfig: one frozen, typed description of a training run, from Python, flags or a YAML file."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from effnet._util.filecheck import MAX_NAME_CHARS, control_character, load_yaml
from effnet._util.fileio import write_text_atomic
from effnet._util.validation import MAX_THREADS, check_field_types, check_range, image_side, thread_count, whole_number
from effnet.data import DataConfig
from effnet.data.mixup import MIX_MODES
from effnet.data.transforms import AUGMENTS
from effnet.preprocess import interpolation_mode
from effnet.train.optim import OPTIMIZERS
from effnet.train.progressive import PROGRESSIVE_SCHEDULES
from effnet.train.schedule import SCHEDULES
from effnet.weights.source import check_one_source

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


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run: model, data, recipe, schedule, runtime options and outputs."""

    # --- what to train on what
    model: str = "efficientnet_b0"  # registry name or spec JSON path (fit(spec=...) overrides it)
    width: float = 1.0  # train the model scaled to this width (channel) multiplier (effnet.scale)
    depth: float = 1.0  # ... and this depth (repeats) multiplier
    data: DataConfig = field(default_factory=DataConfig)
    # Start from the model's pretrained record (True, or a tag) or from a weights file (fine-tuning): the run then
    # uses the weights' padding, BN eps, mean/std and interpolation, and a new classifier when the classes differ.
    pretrained: bool | str = False
    weights: str | None = None
    freeze_epochs: int = 0  # train only the classifier for the first K epochs (backbone frozen, BN in eval)
    # Keep the stem and the first N stages frozen for the whole run (BN statistics too); -1 = the whole backbone.
    frozen_stages: int = 0
    # --- length and resolution
    epochs: int = 10
    batch_size: int = 64  # global batch, split across DDP processes
    min_steps: int = 0  # halve the batch size (down to 8) until the run takes this many optimizer steps
    image_size: int | None = None  # train resolution; None = the model's train/native resolution
    eval_size: int | None = None  # eval resolution; None = image_size if set, else the model's native one
    eval_crop_pct: float | None = None  # None = the family's: res / (res + 32), V2-S/M/L/XL whole image >= 320
    interpolation: str | None = None  # None = the model's (its weights', or bicubic; bilinear for V2-S/M/L/XL)
    # --- optimizer and schedule (paper recipe)
    optimizer: str = "rmsprop_tf"  # rmsprop_tf | sgd | adamw
    lr: float | None = None  # None = lr_per_256 * batch_size / 256
    lr_per_256: float = 0.016
    momentum: float = 0.9
    rmsprop_decay: float = 0.9
    rmsprop_eps: float = 1e-3
    weight_decay: float = 1e-5  # never on BN; on biases as the reference (V1 yes, V2 no)
    schedule: str = "step"  # step (x decay_rate every decay_epochs) | cosine | constant
    warmup_epochs: float | None = None  # None = min(5, 10% of the epochs)
    decay_rate: float = 0.97
    decay_epochs: float = 2.4
    min_lr: float = 0.0
    grad_clip: float | None = None
    # --- regularization and augmentation
    label_smoothing: float = 0.1
    dropout: float | None = None  # None = the model's own
    drop_path_rate: float | None = None  # None = the model's own
    bn_momentum: float | None = None  # None = the model's own (TF's 0.01; short runs want ~0.1)
    # Start the classifier at zero logits (the TF init gives few-class heads large ones); None = when a new
    # classifier sits on loaded weights.
    zero_init_classifier: bool | None = None
    # Depthwise conv init std sqrt(2 / fan_out): "reference" (TF's fan_out k*k, the model's own) or "pytorch"
    # (fan_out k*k*C as torch.nn.init.kaiming_normal_ computes it for PyTorch's [C, 1, k, k] weight).
    depthwise_init: str = "reference"
    ema_decay: float = 0.9999  # 0 turns the EMA off
    # reference (the model's policy: effnet.data.reference_augment) | randaugment | autoaugment (TF reference's)
    # | randaugment_tv | autoaugment_tv (torchvision's) | None
    augment: str | None = "reference"
    randaugment_magnitude: int | None = None  # None = the model's reference magnitude (10 for most)
    randaugment_ops: int = 2
    crop_scale: tuple[float, float] = (0.08, 1.0)
    hflip: float = 0.5
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_mode: str | None = None  # batch | per_sample (EfficientNetV2 release); None = per_sample for V2-S/M/L/XL
    random_erasing: float = 0.0
    # --- V2 progressive learning (ranges None = the schedule's for the model's size)
    progressive: bool = False
    progressive_schedule: str = "paper"  # paper (Table 6) | released (google/automl's code)
    progressive_stages: int = 4
    progressive_image_size: tuple[int, int] | None = None
    progressive_magnitude: tuple[float, float] | None = None
    progressive_mixup: tuple[float, float] | None = None
    progressive_dropout: tuple[float, float] | None = None
    progressive_cutmix: tuple[float, float] | None = None
    # --- runtime
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # `auto` (the default of the options below): the fastest setting for the device the run lands on, chosen at
    # the start of the run (effnet.train.fast) and written to the run's config.yaml under `fast_settings`.
    num_workers: int | str = "auto"  # DataLoader workers per process; auto: the cores per GPU, none on small CPUs
    input_pipeline: str = "auto"  # gpu: decode + augment batches on the device (effnet.data.gpu); auto: gpu on CUDA
    threads: int | str | None = "auto"  # torch CPU threads per process; auto fits the free cores; None: torch's
    channels_last: bool | str = "auto"  # auto: on (CUDA and CPU measured faster)
    amp: str | None = "auto"  # bf16 | fp16 (GPU only) | None (fp32); auto: bf16 / fp16 on CUDA, fp32 on CPU
    compile: bool | str = "auto"  # torch.compile; auto: on CUDA when the run is long enough to repay it
    tf32: bool | str = "auto"  # TF32 matmuls and convolutions on CUDA; auto: on
    grad_checkpointing: bool = False
    memory_efficient_act: bool = False  # fused BN + SiLU that recomputes the BN output in backward
    sync_bn: bool = False
    # --- outputs
    output_dir: str = "runs"
    run_name: str | None = None  # None = <model>-<date>-<time>
    checkpoint_every_steps: int = 0  # 0 = only at the end of each epoch
    keep_last: int = 2
    resume: bool = False  # continue from the newest intact checkpoint in the run folder when there is one
    tensorboard: bool = True
    plot: bool = True
    eval_every: int = 1  # evaluate every N epochs (and always after the last)

    def __post_init__(self) -> None:
        check_field_types(self)  # first: the range checks below compare numbers
        _normalize_switches(self)
        check_one_source(self.pretrained, self.weights)
        checks = [
            (self.width > 0 and self.depth > 0, f"width and depth must be > 0, got {self.width}, {self.depth}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.min_steps >= 0, f"min_steps must be >= 0 (0 = off), got {self.min_steps}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"),
            (
                self.amp in (None, "auto", *AMP_DTYPES),
                f"amp must be auto, {', '.join(AMP_DTYPES)} or off, got {self.amp!r}",
            ),
            *[
                (
                    getattr(self, name) in (True, False, "auto"),
                    f"{name} must be auto, on or off, got {getattr(self, name)!r}",
                )
                for name in ("channels_last", "compile", "tf32")
            ],
            (self.lr is None or self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.bn_momentum is None or 0 < self.bn_momentum <= 1, "bn_momentum must be in (0, 1]"),
            (0.0 <= self.ema_decay < 1.0, f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}"),
            (0.0 <= self.label_smoothing < 1.0, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.freeze_epochs >= 0, f"freeze_epochs must be >= 0, got {self.freeze_epochs}"),
            (self.frozen_stages >= -1, f"frozen_stages must be >= -1 (-1 = whole backbone), got {self.frozen_stages}"),
            (self.keep_last >= 1, f"keep_last must be >= 1, got {self.keep_last}"),
            (self.checkpoint_every_steps >= 0, "checkpoint_every_steps must be >= 0 (0 = per epoch only)"),
            (
                self.num_workers == "auto" or (isinstance(self.num_workers, int) and self.num_workers >= 0),
                f"num_workers must be auto or a number >= 0, got {self.num_workers!r}",
            ),
            (
                self.threads in (None, "auto") or (isinstance(self.threads, int) and self.threads >= 1),
                f"threads must be auto or a number >= 1, got {self.threads!r}",
            ),
            (
                self.progressive_schedule in PROGRESSIVE_SCHEDULES,
                f"progressive_schedule must be one of {PROGRESSIVE_SCHEDULES}, got {self.progressive_schedule!r}",
            ),
            (self.eval_every >= 1, f"eval_every must be >= 1, got {self.eval_every}"),
            (self.image_size is None or self.image_size >= 32, "image_size must be >= 32 (the network's stride)"),
            (self.eval_size is None or self.eval_size >= 32, "eval_size must be >= 32 (the network's stride)"),
            (
                self.augment in (None, "none", "reference", *AUGMENTS),
                f"augment must be one of reference, {', '.join(AUGMENTS)} or none, got {self.augment!r}",
            ),
            (
                self.depthwise_init in DEPTHWISE_INITS,
                f"depthwise_init must be one of {DEPTHWISE_INITS}, got {self.depthwise_init!r}",
            ),
            (self.mix_mode in (None, *MIX_MODES), f"mix_mode must be one of {MIX_MODES}, got {self.mix_mode!r}"),
            *_range_checks(self),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    # ------------------------------------------------------------------------------------- derived values
    @property
    def peak_lr(self) -> float:
        """The learning rate after warm-up: `lr`, or lr_per_256 scaled linearly with the batch size."""
        return self.lr if self.lr is not None else self.lr_per_256 * self.batch_size / 256

    @property
    def warmup(self) -> float:
        """Warm-up length in epochs (the paper's 5, but at most 10% of a short run)."""
        return self.warmup_epochs if self.warmup_epochs is not None else min(5.0, 0.1 * self.epochs)

    # ---------------------------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML/JSON-able; tuples become lists)."""
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from plain data (a YAML file, a checkpoint); unknown keys are an error with the valid ones."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; valid ones: {', '.join(sorted(known))}")
        kwargs = dict(values)
        if "data" in kwargs and not isinstance(kwargs["data"], (dict, DataConfig)):
            raise ValueError(f"data must be a mapping of data options (name, root, ...), got {kwargs['data']!r}")
        if isinstance(kwargs.get("data"), dict):
            data_known = {f.name for f in fields(DataConfig)}
            bad = sorted(set(kwargs["data"]) - data_known)
            if bad:
                raise ValueError(f"unknown data option(s) {bad}; valid ones: {', '.join(sorted(data_known))}")
            kwargs["data"] = DataConfig(**kwargs["data"])
        for name in (
            "crop_scale",
            "progressive_image_size",
            "progressive_magnitude",
            "progressive_mixup",
            "progressive_dropout",
            "progressive_cutmix",
        ):
            if isinstance(kwargs.get(name), list):
                kwargs[name] = tuple(kwargs[name])
        return cls(**kwargs)

    @classmethod
    def from_recipe(cls, recipe: str = "paper", **overrides: Any) -> TrainConfig:
        """A config starting from a named recipe (`paper`, `finetune`) with some values changed."""
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
        return cls.from_dict({**RECIPES[recipe], **overrides})

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a YAML file (as written in every run folder), optionally overriding some values."""
        return cls.from_dict({**read_yaml(path), **overrides})

    @classmethod
    def resolve(
        cls,
        *,
        config_file: str | Path | None = None,
        resume_dir: str | Path | None = None,
        recipe: str | None = None,
        data: dict[str, Any] | None = None,
        **options: Any,
    ) -> TrainConfig:
        """A run's config from, lowest first: a YAML file (or, with `resume_dir`, that run's config.yaml), a recipe,
        data options and option values (None values are ignored). `resume_dir` also sets resume, output_dir and
        run_name so that the run continues in its own folder."""
        values: dict[str, Any] = {}
        source = None
        if resume_dir is not None:
            resume_dir = Path(resume_dir)
            if not (resume_dir / "config.yaml").is_file():
                raise ValueError(
                    f"{resume_dir} is not a run folder (no config.yaml); pass the folder `effnet train` made"
                )
            source = resume_dir / "config.yaml"
            values = read_yaml(source)
        elif config_file is not None:
            source = Path(config_file)
            values = read_yaml(source)
        from_file = set(values) | set(values.get("data") or {})
        if resume_dir is not None:
            values |= {"output_dir": str(resume_dir.parent), "run_name": resume_dir.name, "resume": True}
        merged_data = values.pop("data", None) or {}
        if not isinstance(merged_data, dict):
            raise ValueError(f"data must be a mapping of data options (name, root, ...), got {merged_data!r}")
        if recipe is not None:
            if recipe not in RECIPES:
                raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
            preset = dict(RECIPES[recipe])
            merged_data = {**merged_data, **preset.pop("data", {})}
            values = {**values, **preset}
        merged_data |= {key: value for key, value in (data or {}).items() if value is not None}
        values |= {key: value for key, value in options.items() if value is not None}
        given = {key for key, value in [*options.items(), *(data or {}).items()] if value is not None}
        try:
            return cls.from_dict({**values, "data": merged_data})
        except ValueError as err:  # a value the file gave (and no flag replaced): name the file
            if source is None or _option_named(str(err), from_file - given) is None:
                raise
            raise ValueError(f"{source}: {err}") from None

    def save_yaml(self, path: str | Path, fast_settings: dict[str, Any] | None = None) -> Path:
        """Write the config as YAML; `fast_settings` (what `auto` resolved to on the run's device) is recorded
        beside the options and ignored when the file is read back, so a resumed run fits its own device."""
        values = self.to_dict() | ({"fast_settings": fast_settings} if fast_settings is not None else {})
        return write_text_atomic(path, yaml.safe_dump(values, sort_keys=False))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some values changed."""
        return dataclasses.replace(self, **changes)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file (a `recipe:` key selects a preset underneath it)."""
    path = Path(path)
    values = load_yaml(path) or {}  # UTF-8, no duplicate keys, bounded size and nesting (effnet._util.filecheck)
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of option: value, got {type(values).__name__}")
    values.pop("fast_settings", None)  # a record of a past run's device, not an option (see save_yaml)
    recipe = values.pop("recipe", None)
    if recipe is not None:
        if recipe not in RECIPES:
            raise ValueError(f"{path}: unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
        values = {**RECIPES[recipe], **values}
    return values


def _option_named(message: str, names: set[str]) -> str | None:
    """The option among `names` an error message is about (its first word, or listed as unknown)."""
    first = message.split(" ", 1)[0].rstrip(":,")
    if first in names:
        return first
    return next((name for name in sorted(names) if f"'{name}'" in message), None)


_ON, _OFF = ("on", "true", "yes"), ("off", "false", "no")


def _normalize_switches(cfg: TrainConfig) -> None:
    """Spelled-out switch values as data: on/off -> True/False, amp off/none/fp32 -> None (fp32)."""
    for name in ("channels_last", "compile", "tf32"):
        value = getattr(cfg, name)
        if isinstance(value, str) and value.lower() in _ON + _OFF:
            object.__setattr__(cfg, name, value.lower() in _ON)
    if isinstance(cfg.amp, str) and cfg.amp.lower() in ("off", "none", "fp32", "no", "false"):
        object.__setattr__(cfg, "amp", None)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _range_checks(cfg: TrainConfig) -> list[tuple[bool, str]]:
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
