"""`effnet scale`: compound-scale a base network (or scale one dimension) and write the spec to a file."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from effnet._util.validation import finite_number

NAME = "scale"
HELP = "compound-scale a base network and write the spec to a file"

# Finite at parse time; the scaling engine then says which range each value must lie in (and why).
_REAL = finite_number(-math.inf, math.inf)
_COEFFICIENT = finite_number(0.0, 100.0, above=True)
_MULTIPLIER = finite_number(0.0, math.inf, above=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `scale`."""
    from effnet.models.scaling import ALPHA, BETA, DEPTH_ROUNDING, GAMMA  # pure Python: no torch

    sc = subparsers.add_parser(NAME, help=HELP)
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
    sc.set_defaults(func=run)


def _base(name: str) -> Any:
    """The base network's spec: a registry name, a spec file or the b0..b7 shorthand."""
    from effnet.models.registry import list_models, resolve_spec

    if name in list_models() or name.endswith(".json"):
        return resolve_spec(name)
    return resolve_spec(f"efficientnet_{name}")  # `b0` shorthand


def run(args: argparse.Namespace) -> int:
    """Scale the base, write its spec file and print it with its cost."""
    from effnet._util.console import print_json
    from effnet.models.complexity import profile

    base = _base(args.base)
    spec = _scaled(args, base)
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


def _scaled(args: argparse.Namespace, base: Any) -> Any:
    """The spec --phi (compound) or --width / --depth / --resolution (explicit multipliers) make of `base`."""
    from effnet.models.scaling import compound_scale, scale

    explicit = (args.width, args.depth, args.resolution)
    if args.phi is not None and any(v is not None for v in explicit):
        raise ValueError("give either --phi (compound scaling) or --width/--depth/--resolution, not both")
    if args.phi is not None:
        return compound_scale(
            base,
            args.phi,
            args.alpha,
            args.beta,
            args.gamma,
            name=args.name,
            allow_any_ratio=args.allow_any_ratio,
            depth_rounding=args.depth_rounding,
        )
    if any(v is not None for v in explicit):
        width, depth, resolution = (1.0 if v is None else v for v in explicit)
        return scale(
            base, width=width, depth=depth, resolution=resolution, name=args.name, depth_rounding=args.depth_rounding
        )
    raise ValueError("nothing to scale: give --phi, or --width/--depth/--resolution")
