"""`effnet predict`: classify image files, folders or globs with a model."""

from __future__ import annotations

import argparse
import json
import math
import sys

from effnet._util.validation import whole_number
from effnet.commands._flags import TOP_K, add_model_flags, add_output_flags, add_preprocess_flags

NAME = "predict"
HELP = "classify images (files, folders, globs) with a model"

_BATCH = whole_number(1, 4096)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `predict`."""
    pr = subparsers.add_parser(NAME, help=HELP)
    pr.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    add_model_flags(pr, classes=True)
    add_preprocess_flags(pr)
    pr.add_argument("--top-k", type=TOP_K, default=5, help="classes to print per image (default 5)")
    pr.add_argument("--batch-size", type=_BATCH, default=16, help="images per forward pass (default 16)")
    add_output_flags(pr, "print JSON lines instead of text", quiet=True)
    pr.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Classify the inputs; exit code 1 when some could not be read or classified."""
    from tqdm import tqdm

    from effnet._util.console import show_bar
    from effnet.commands._source import class_names, load_from_flags
    from effnet.deploy.predict import collect_images, predict_files

    paths = collect_images(args.inputs)
    model = load_from_flags(args, args.model, args.weights, need_weights=True)
    names = class_names(args, model)
    failures = 0
    results = predict_files(model, paths, top_k=args.top_k, batch_size=args.batch_size, class_names=names)
    show_progress = show_bar(len(paths) > args.batch_size and not args.json and not args.quiet)
    for prediction in tqdm(results, total=len(paths), disable=not show_progress, unit="img", file=sys.stderr):
        if prediction.error is not None:
            failures += 1
            print(f"{prediction.path}: cannot read: {prediction.error}", file=sys.stderr)
            if args.json:
                print(json.dumps(prediction.to_dict()))
            continue
        if not all(math.isfinite(score.probability) for score in prediction.top):
            failures += 1  # e.g. an image that overflows a layer: no class to print
            print(f"{prediction.path}: the model's outputs are not finite; not classified", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps(prediction.to_dict()))
            continue
        print(prediction.path)
        for score in prediction.top:
            print(f"  {score.index:>5}  {score.probability:7.2%}  {score.name}")
    if failures:
        print(f"{failures} of {len(paths)} files could not be read; the others were classified", file=sys.stderr)
    return 1 if failures else 0
