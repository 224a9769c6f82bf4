"""`effnet profile`: parameters and multiply-adds of models beside the papers' figures."""

from __future__ import annotations

import argparse
import json
from typing import Any

from effnet._util.validation import image_side

NAME = "profile"
HELP = "params and multiply-adds beside the paper's figures"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `profile`."""
    prof = subparsers.add_parser(NAME, help=HELP)
    prof.add_argument("models", nargs="*", help="model names or spec files (default: efficientnet_b0..b7)")
    prof.add_argument("--resolution", type=image_side, help="input size (default: each model's native resolution)")
    prof.add_argument("--stages", action="store_true", help="also print the per-stage breakdown")
    prof.add_argument("--json", action="store_true", help="print JSON instead of a table")
    prof.set_defaults(func=run)


def _row(result: Any, spec: Any) -> dict[str, float | int | str]:
    from effnet.models.complexity import PAPER_FIGURES

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


def run(args: argparse.Namespace) -> int:
    """Print each model's parameters and multiply-adds (and its stages), or JSON."""
    from effnet.models.complexity import profile
    from effnet.models.registry import resolve_spec

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
