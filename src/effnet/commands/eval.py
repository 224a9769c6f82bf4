"""`effnet eval`: top-1 / top-5 / loss of a checkpoint, weights file or exported model on a dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from effnet._util.validation import image_side, whole_number
from effnet.commands._flags import add_data_flags, data_options

NAME = "eval"
HELP = "top-1 / top-5 / loss of a checkpoint or weights file on a dataset"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `eval`."""
    ev = subparsers.add_parser(NAME, help=HELP)
    ev.add_argument(
        "weights",
        type=Path,
        help="an `effnet train` checkpoint (.pt), a weights file, or an exported .onnx / OpenVINO .xml",
    )
    ev.add_argument("--model", help="architecture, for weight files that do not record it")
    ev.add_argument("--raw", action="store_true", help="evaluate the raw weights instead of the EMA ones")
    ev.add_argument("--image-size", type=image_side, help="eval resolution (default: the run's / the model's)")
    ev.add_argument("--batch-size", type=whole_number(1, 65_536), default=64)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--json", action="store_true", help="print JSON")
    add_data_flags(ev)
    ev.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate the weights on the dataset's validation split and print the metrics."""
    from effnet.train.evaluate import evaluate_checkpoint

    metrics = evaluate_checkpoint(
        args.weights,
        model=args.model,
        use_ema=not args.raw,
        data=data_options(args),
        image_size=args.image_size,
        batch_size=args.batch_size,
        device=args.device,
    )
    if args.json:
        print(json.dumps(metrics))
    else:
        print(
            f"{args.weights}: top-1 {metrics['top1']:.4f}  top-5 {metrics['top5']:.4f}  loss {metrics['loss']:.4f}"
            f"  ({metrics['count']} images at {metrics['image_size']}px, crop {metrics['crop_pct']:.3f})"
        )
    return 0
