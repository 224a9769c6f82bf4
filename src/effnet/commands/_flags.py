"""Flag groups several commands share, each defined once: where the model comes from, preprocessing overrides,
int8 export (generated from `QuantizeConfig`), datasets and output. Only argparse-level imports at module level:
`effnet --help` builds every parser without importing torch."""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from effnet._util.validation import (
    data_seed,
    finite_number,
    fraction,
    pixel_std,
    positive_int,
    probability,
    whole_number,
)

DEFAULT_MODEL = "efficientnet_lite0"

_HELP_MODEL = "registry name or spec file (see `effnet models`)"

# Every numeric flag is finite and in range when parsed (effnet._util.validation): a value no command can use is a
# one-line error naming the flag, never a silent default, a NaN result or a huge allocation.
NORM_EPS = finite_number(0.0, 1.0, above=True)
FRACTION = fraction
STD = pixel_std
PHOTOS = whole_number(1, 1_000_000)
TOP_K = whole_number(1, 100_000)


def add_model_flags(parser: argparse.ArgumentParser, multiple: bool = False, classes: bool = False) -> None:
    """--model, --weights, --pretrained [TAG], --padding and --norm-eps (and --classes-file): where the model, its
    weights (and its class names) come from."""
    default = "the weights file's own, else efficientnet_lite0"
    if multiple:
        parser.add_argument("--model", nargs="+", help=f"{_HELP_MODEL}; several OK (default: {default})")
        parser.add_argument("--weights", nargs="+", type=Path, help="one weight file per --model")
    else:
        parser.add_argument("--model", help=f"{_HELP_MODEL} (default: {default})")
        parser.add_argument(
            "--weights",
            type=Path,
            help="weight file: effnet .safetensors / checkpoint, timm, torchvision or efficientnet-pytorch state "
            "dict, or a .onnx / OpenVINO .xml file from `effnet export`",
        )
    add_pretrained_flag(
        parser,
        "the model's pretrained weights: its default record, or TAG (also as --model NAME.TAG; see "
        "`effnet models --pretrained`)",
        default=False,
    )
    parser.add_argument("--padding", choices=("symmetric", "same"), help='"same" for TF-trained weight files')
    parser.add_argument("--norm-eps", type=NORM_EPS, help="BatchNorm epsilon (1e-3 for TF-trained weight files)")
    if classes:
        parser.add_argument(
            "--classes-file", type=Path, help="class names, one per line (default: the weights' own, or ImageNet-1k)"
        )


class PretrainedTag(argparse.Action):
    """`--pretrained` alone (True) or `--pretrained TAG` (the tag, a str)."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: str | None = None
    ) -> None:
        setattr(namespace, self.dest, True if values is None else values)

    def prepare_argv(self, parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
        """Called by `effnet.cli.Parser` before parsing: see `inputs_before_pretrained`."""
        return inputs_before_pretrained(parser, argv)


def add_pretrained_flag(parser: argparse.ArgumentParser, help_text: str, default: bool | None) -> None:
    """`--pretrained [TAG]`, spelled the same on every command that loads a model."""
    parser.add_argument("--pretrained", nargs="?", action=PretrainedTag, default=default, metavar="TAG", help=help_text)


def is_tag(word: str) -> bool:
    """Whether the word after `--pretrained` is a tag rather than an input (a path, a folder or a glob)."""
    looks_like_path = any(sep in word for sep in ("/", os.sep, "*", "?", "[")) or Path(word).suffix.lower() in (
        ".jpg",
        ".jpeg",
        ".png",
        ".webp",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
    )
    return not word.startswith("-") and not looks_like_path and not os.path.exists(word)


def inputs_before_pretrained(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """argv with inputs written right after `--pretrained` moved before it, for commands with positional inputs:
    `effnet predict --pretrained cat.jpg` read the photo as an input before `--pretrained` took a TAG."""
    takes_inputs = any(not action.option_strings and action.nargs in ("+", "*") for action in parser._actions)
    argv = list(argv)
    if not takes_inputs or "--pretrained" not in argv:
        return argv
    at = argv.index("--pretrained")
    moved = []
    while at + 1 < len(argv) and not argv[at + 1].startswith("-") and not is_tag(argv[at + 1]):
        moved.append(argv.pop(at + 1))
    return argv[:at] + moved + argv[at:]


def with_tag(name: str | None, pretrained: bool | str | None) -> tuple[str | None, bool]:
    """(model name, pretrained?) with `--pretrained TAG` folded into the name, as `--model NAME.TAG --pretrained`."""
    if not isinstance(pretrained, str):
        return name, bool(pretrained)
    if "." in pretrained:  # a full tag, e.g. efficientnet_b0.ra_in1k
        return pretrained, True
    return f"{name or DEFAULT_MODEL}.{pretrained}", True


def add_preprocess_flags(parser: argparse.ArgumentParser) -> None:
    """--input-size, --crop-pct, --resize-mode, --mean and --std: overrides of the model's own preprocessing."""
    from effnet._util.validation import image_side

    group = parser.add_argument_group("preprocessing overrides (default: the model's own)")
    group.add_argument("--input-size", type=image_side, help="crop / network input size")
    group.add_argument("--crop-pct", type=FRACTION, help="input size / resize size (crop resize mode)")
    group.add_argument(
        "--resize-mode", choices=("crop", "squash", "tf"), help="center crop, whole-image resize or TF's own eval"
    )
    group.add_argument("--mean", type=probability, nargs=3, help="per-channel mean of [0, 1] pixels")
    group.add_argument("--std", type=STD, nargs=3, help="per-channel std of [0, 1] pixels")


def preprocess_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The preprocessing flags given (unset ones left out), as `Preprocess` fields."""
    given = {
        "input_size": getattr(args, "input_size", None),
        "crop_pct": getattr(args, "crop_pct", None),
        "resize_mode": getattr(args, "resize_mode", None),
        "mean": tuple(args.mean) if getattr(args, "mean", None) else None,
        "std": tuple(args.std) if getattr(args, "std", None) else None,
    }
    return {key: value for key, value in given.items() if value is not None}


def add_output_flags(parser: argparse.ArgumentParser, json_help: str, quiet: bool = False) -> None:
    """--json (and --quiet: no progress bar)."""
    parser.add_argument("--json", action="store_true", help=json_help)
    if quiet:
        parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_data_flags(parser: argparse.ArgumentParser | Any, split: bool = True) -> None:
    """--data, --data-root, --num-train, --num-val (and with `split` --val-fraction, --data-seed): the dataset a run
    trains or evaluates on."""
    from effnet.data.config import DATASET_NAMES

    parser.add_argument("--data", choices=DATASET_NAMES, help="dataset (default shapes, built in)")
    parser.add_argument("--data-root", help="folder of a folder/CIFAR dataset")
    parser.add_argument("--num-train", type=positive_int, help="shapes: training images (default 5000)")
    parser.add_argument("--num-val", type=positive_int, help="shapes: validation images (default 1000)")
    if split:
        parser.add_argument("--val-fraction", type=FRACTION, help="folder without val/: fraction held out")
        parser.add_argument("--data-seed", type=data_seed, help="shapes/split seed")


def data_options(args: argparse.Namespace) -> dict[str, Any]:
    """The dataset flags as `DataConfig` fields (None: not given)."""
    return {
        "name": args.data,
        "root": args.data_root,
        "num_train": args.num_train,
        "num_val": args.num_val,
        "val_fraction": args.val_fraction,
        "seed": args.data_seed,
    }


def field_type(annotation: Any) -> tuple[Any, bool]:
    """(type, optional) of a dataclass field annotation such as `int | None` or `tuple[float, float] | None`."""
    hint = eval(annotation, vars(typing)) if isinstance(annotation, str) else annotation  # noqa: S307 - own code
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        inner = [arg for arg in args if arg is not type(None)]
        return inner[0], True
    return hint, False


# QuantizeConfig field -> (flag, help); fields left out keep their defaults (tuned, not a user's choice).
INT8_FLAGS = {
    "backend": ("--int8-backend", "default %(default)s"),
    "method": ("--calibration-method", None),
    "keep_float": ("--keep-float", "ONNX node name prefixes"),
    "float_ops": (
        "--float-ops",
        "kinds of operation computed in float: depthwise convs, residual adds, the final linear classifier "
        "(auto: all three on openvino, none on onnxruntime)",
    ),
    "rounding": (
        "--weight-rounding",
        "optimized: round each weight for its layer's outputs on the calibration photos; nearest: plain PTQ "
        "(auto: optimized on openvino, nearest on onnxruntime)",
    ),
    "overflow_fix": (
        "--int8-overflow-fix",
        "halve the first layer's weight range (NNCF), for CPUs without VNNI whose int8 sums can saturate",
    ),
    "calibration_size": ("--calibration-size", "default %(default)s"),
    "holdout_size": ("--holdout-size", "default %(default)s"),
    "min_agreement": ("--min-agreement", "top-1 agreement with fp32 (default 0.9)"),
}
INT8_FIXED = ("per_channel", "full_bias_correction", "rounding_size", "threads", "timing_runs")


def add_int8_flags(parser: argparse.ArgumentParser) -> None:
    """The int8 export flags, one per user-facing `QuantizeConfig` field (its default, type and choices)."""
    from effnet.deploy import quantize

    choices = {
        "backend": quantize.QUANT_BACKENDS,
        "method": quantize.CALIBRATION_METHODS,
        "rounding": quantize.ROUNDINGS,
        "float_ops": quantize.FLOAT_OPS,
    }
    group = parser.add_argument_group("int8 (post-training static quantization, judged on held-out photos)")
    group.add_argument("--int8", action="store_true", help="write an int8 model (ONNX QDQ, or OpenVINO IR)")
    group.add_argument("--calibration", type=Path, help="folder of real photos like the ones the model will see")
    group.add_argument("--holdout", type=Path, help="photos to judge on (default: calibration photos left over)")
    for option, flag, help_text in _int8_fields(quantize.QuantizeConfig):
        kind, _ = field_type(option.type)
        spec: dict[str, Any] = {"dest": "int8_" + option.name, "default": option.default, "help": help_text}
        if kind is bool:  # a field on by default is turned off with --no-<flag>
            spec |= {"action": argparse.BooleanOptionalAction if option.default else "store_true"}
        else:  # argparse names the value after the flag, not after `dest`
            metavar = None if option.name in choices else flag[2:].replace("-", "_").upper()
            spec |= {"choices": choices.get(option.name), "metavar": metavar}
        if typing.get_origin(kind) is tuple:
            spec |= {"nargs": "+", "default": list(option.default)}
        elif kind is not bool:
            spec |= {"type": {int: PHOTOS, float: probability}.get(kind)}
        group.add_argument(flag, **{key: value for key, value in spec.items() if value is not None})
    group.add_argument(
        "--force", action="store_true", help="write the model even when its check fails (int8: below --min-agreement)"
    )
    group.add_argument(
        "--random-weights", action="store_true", help="--int8 without --pretrained / --weights: quantize random weights"
    )


def _int8_fields(config_class: type) -> list[tuple[Any, str, str | None]]:
    """(field, flag, help) for each `QuantizeConfig` field a user sets: as named in INT8_FLAGS, or --int8-<name> for
    a field added since (tests/test_cli_fast.py asks for a name and help there)."""
    fields = [option for option in dataclasses.fields(config_class) if option.name not in INT8_FIXED]
    generic = {option.name: ("--int8-" + option.name.replace("_", "-"), None) for option in fields}
    return [(option, *INT8_FLAGS.get(option.name, generic[option.name])) for option in fields]


def int8_config(args: argparse.Namespace) -> Any:
    """The `QuantizeConfig` the int8 flags describe."""
    from effnet.deploy.quantize import QuantizeConfig

    given = {option.name: getattr(args, "int8_" + option.name) for option, _, _ in _int8_fields(QuantizeConfig)}
    return QuantizeConfig(**{key: tuple(value) if isinstance(value, list) else value for key, value in given.items()})
