"""TrainConfig: one frozen, typed description of a training run, from Python, flags or a YAML file."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from effnet._util.filecheck import load_yaml
from effnet._util.fileio import write_text_atomic
from effnet._util.validation import check_field_types
from effnet.data import DataConfig
from effnet.train.options import normalize_switches, option_checks
from effnet.train.recipes import RECIPES
from effnet.weights.source import check_one_source


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
        check_field_types(self)  # first: the range checks compare numbers
        normalize_switches(self)
        check_one_source(self.pretrained, self.weights)
        for ok, message in option_checks(self):
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


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
