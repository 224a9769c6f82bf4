"""`effnet train`: flags (and an optional YAML file) -> TrainConfig -> effnet.train.fit."""

from __future__ import annotations

import argparse
import os
import sys
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from effnet._util.validation import MAX_THREADS, finite_number
from effnet.commands._flags import add_data_flags, add_pretrained_flag, data_options, field_type

NAME = "train"
HELP = "train a model with the EfficientNet recipe"

# `effnet train` without --config/--recipe/--resume starts from the "quick" recipe: B0 at half width and depth,
# 96 px, 6 epochs on the built-in shapes, a few minutes on 2 CPU cores. Explicit flags override it.
QUICKSTART_RECIPE = "quick"

_HELP = {
    "model": "registry name (see `effnet models`) or a spec file from `effnet scale`",
    "weights": "start from these weights (an effnet checkpoint, .safetensors, timm/torchvision file); implies "
    "--recipe finetune unless a recipe or --config is given",
    "min_steps": "halve the batch size (down to 8) until the run takes this many optimizer steps",
    "frozen_stages": "keep the stem and the first N stages frozen all run (-1: the whole backbone; finetune: -1)",
    "freeze_epochs": "train only the classifier for the first N epochs",
    "batch_size": "global batch size (split across DDP processes)",
    "image_size": "train resolution (default: the model's own)",
    "eval_size": "eval resolution (default: --image-size, else the model's own)",
    "lr": "peak learning rate (default: lr_per_256 x batch/256)",
    "warmup_epochs": "warm-up length (default min(5, 10%% of the epochs))",
    "ema_decay": "EMA decay of the weights (0 = off)",
    "progressive": "EfficientNetV2 progressive learning (size and regularization grow by stage)",
    "progressive_schedule": "paper (Table 6: size from 128 px, dropout grows) or released (google/automl's code: "
    "S from 171 px, constant dropout, mixup+cutmix ramp)",
    "memory_efficient_act": "fused BN + SiLU, BN output recomputed in backward (~0.7x saved activations)",
    "checkpoint_every_steps": "also checkpoint every N optimizer steps (0 = per epoch only)",
    "resume": "continue from the run folder's last checkpoint",
    "amp": "autocast dtype: auto (bf16 on GPUs that have it, else fp16; fp32 on CPU), bf16, fp16 (GPU) or off",
    "channels_last": "NHWC memory layout: auto (on: faster on CUDA and measured 1.5-2.3x on CPU), on or off",
    "compile": "torch.compile: auto (on CUDA when the run has enough steps to repay the build), on or off",
    "tf32": "TF32 matmuls/convolutions on CUDA: auto (on), on or off",
    "threads": "torch threads per process: auto (the free cores: affinity, cgroup quota, load average, ranks) or N",
    "num_workers": "DataLoader workers per process: auto (the cores per GPU; none on CPUs under 8 cores) or N",
    "input_pipeline": "where images are decoded and augmented: auto (gpu on CUDA, else cpu), cpu (DataLoader "
    "workers, per image) or gpu (whole batches on the training device: effnet.data.gpu)",
    "deterministic": "deterministic kernels (a resumed run then ends exactly like an uninterrupted one)",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `train`: one flag per TrainConfig field, plus the run's own (--config, --recipe, --resume, ...)."""
    from effnet.train.config import RECIPES, TrainConfig  # the flags come from the config's fields

    train = subparsers.add_parser(
        NAME, help=HELP, description="Train with the EfficientNet recipe. Flags override --config."
    )
    train.add_argument("--config", type=Path, help="YAML file of options (e.g. a run folder's config.yaml)")
    train.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        help="preset to start from: paper (the EfficientNet "
        "ImageNet recipe), finetune, quick (default when no --config is given)",
    )
    add_data_flags(train)
    add_pretrained_flag(
        train,
        "start from the model's pretrained weights (its default record, or TAG) with their "
        "padding, BN eps and preprocessing; implies --recipe finetune unless one is given",
        default=None,
    )
    for option in fields(TrainConfig):
        if option.name in _NOT_FLAGS:
            continue
        _add_option(train, option, RECIPES[QUICKSTART_RECIPE])
    train.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="RUN_DIR",
        help="continue a run (its folder, or --run-name's) from its last checkpoint",
    )
    train.add_argument(
        "--overwrite", action="store_true", help="replace the run already in --run-name's folder (otherwise refused)"
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar (the run's lines still print)")
    train.add_argument("--json", action="store_true", help="print only the result, as JSON")
    train.set_defaults(func=run)


_NOT_FLAGS = ("data", "resume", "pretrained")  # fields with a hand-written flag (or none)


# Runtime options whose default `auto` picks the fastest setting for the device (effnet.train.fast).
_SWITCHES = ("channels_last", "compile", "tf32")  # auto | on | off; the bare flag means on
_COUNTS = {"threads": 1, "num_workers": 0}  # auto | N >= the value
_FINITE = finite_number(-float("inf"), float("inf"))


def _add_option(parser: argparse.ArgumentParser, option: Any, quick: dict[str, Any]) -> None:
    """The flag of one TrainConfig field: its type, bounds and default (and the quick recipe's value) from the field."""
    flag = "--" + option.name.replace("_", "-")
    kind, optional = field_type(option.type)
    default = option.default if option.default is not MISSING else None
    if option.name in quick:
        default = f"{default}; {quick[option.name]} in the quick recipe"
    help_text = _HELP.get(option.name, "") + f" (default {default})"
    from effnet.train.options import OPTION_BOUNDS, WHOLE  # ranges shared with the config file's checks

    numbers = {int: WHOLE, float: _FINITE}
    if option.name in _SWITCHES:
        parser.add_argument(
            flag, nargs="?", const=True, default=None, type=_switch, metavar="auto|on|off", help=help_text
        )
        parser.add_argument(
            "--no-" + flag[2:], dest=option.name, action="store_const", const=False, help=argparse.SUPPRESS
        )  # the spelling BooleanOptionalAction gave these flags
    elif option.name == "amp":
        parser.add_argument(flag, type=_amp, default=None, metavar="auto|bf16|fp16|off", help=help_text)
    elif option.name in _COUNTS:
        parser.add_argument(
            flag, type=_count_or_auto(_COUNTS[option.name]), default=None, metavar="auto|N", help=help_text
        )
    elif kind is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
    elif typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        parser.add_argument(
            flag, type=numbers.get(item, item), nargs=2, metavar=("MIN", "MAX"), default=None, help=help_text
        )
    else:
        convert = OPTION_BOUNDS.get(option.name) or numbers.get(kind, kind)
        convert = convert if not optional else _optional(convert)
        parser.add_argument(flag, type=convert, default=None, help=help_text)


def _switch(text: str) -> bool | str:
    value = text.lower()
    if value not in ("auto", "on", "off"):
        raise ValueError(text)
    return "auto" if value == "auto" else value == "on"


_switch.__name__ = "auto|on|off"


def _amp(text: str) -> str:
    value = text.lower()
    if value not in ("auto", "bf16", "fp16", "off"):
        raise ValueError(text)
    return value  # "off" (not None, which means "not given"): TrainConfig reads it as fp32


_amp.__name__ = "auto|bf16|fp16|off"


def _count_or_auto(minimum: int) -> Any:
    def convert(text: str) -> int | str:
        if text.lower() == "auto":
            return "auto"
        if not text.isdigit() or not minimum <= int(text) <= MAX_THREADS:
            raise ValueError(text)
        return int(text)

    convert.__name__ = f"auto or a number in [{minimum}, {MAX_THREADS}]"
    return convert


def _optional(kind: type) -> Any:
    def convert(text: str) -> Any:
        return None if text.lower() in ("none", "null") else kind(text)

    convert.__name__ = getattr(kind, "__name__", "value")
    return convert


def build_config(args: argparse.Namespace) -> Any:
    """TrainConfig from (lowest first) quick-start defaults or --config / a resumed run's config, --recipe, flags."""
    from effnet.train.config import TrainConfig

    resume_dir = Path(args.resume) if isinstance(args.resume, str) else None
    if resume_dir is not None and args.config is not None:  # the run's own config.yaml wins: refuse, not ignore
        raise ValueError(
            f"--config {args.config} would be ignored: --resume {resume_dir} continues with the run's "
            f"own config.yaml; drop --config (or start a new run with --config and no --resume)"
        )
    recipe = args.recipe
    if recipe is None and resume_dir is None and args.config is None:
        # Pretrained weights want the fine-tune recipe; without them a run starts from the quick one.
        recipe = "finetune" if (args.pretrained or args.weights) else QUICKSTART_RECIPE
    data = data_options(args)
    options = {
        option.name: getattr(args, option.name)
        for option in fields(TrainConfig)
        if option.name not in ("data", "resume")
    }
    options = {key: tuple(value) if isinstance(value, list) else value for key, value in options.items()}
    options["resume"] = args.resume is not None  # a config file's `resume:` never applies by itself
    return TrainConfig.resolve(config_file=args.config, resume_dir=resume_dir, recipe=recipe, data=data, **options)


def run(args: argparse.Namespace) -> int:
    """Train (resumable; SIGTERM and Ctrl-C leave a checkpoint) and print the result."""
    from effnet._util.console import print_json
    from effnet.train import TrainingDiverged, TrainingInterrupted, fit
    from effnet.train.signals import TerminateAsException, Terminated, exit_code

    config = build_config(args)
    try:
        with TerminateAsException():  # SIGTERM: a checkpoint at the next step, a line and 143 (train/signals.py)
            result = fit(config, progress=not args.json, overwrite=args.overwrite, bar=not args.quiet)
    except TrainingDiverged as err:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"effnet train: {err}", file=sys.stderr)
        return 1
    except TrainingInterrupted as err:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"effnet train: {err}", file=sys.stderr)
        return exit_code(err.signum)
    except KeyboardInterrupt:  # a Ctrl-C before the first step (while the data or model is built)
        print(
            f"effnet train: interrupted; continue with: effnet train --resume {_run_dir_hint(config)}", file=sys.stderr
        )
        return 130
    except Terminated:  # a SIGTERM before the first step
        print(
            f"effnet train: stopped by SIGTERM before the first step; continue with: effnet train --resume "
            f"{_run_dir_hint(config)}",
            file=sys.stderr,
        )
        return 143
    if int(os.environ.get("RANK", "0")) == 0 and args.json:
        print_json(result)
    elif int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 reports
        ema = f", EMA {result.final_ema_val_acc:.4f}" if result.final_ema_val_acc is not None else ""
        print(
            f"done: {result.epochs} epochs in {result.train_seconds:.0f}s; val top-1 {result.final_val_acc:.4f}"
            f" (best {result.best_val_acc:.4f}){ema}; run folder {result.run_dir}"
        )
    return 0


def _run_dir_hint(config: Any) -> str:
    return str(Path(config.output_dir) / config.run_name) if config.run_name else "<run folder>"
