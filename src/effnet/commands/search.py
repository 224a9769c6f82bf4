"""`effnet search`: grid-search alpha, beta and gamma (compound scaling, the paper's step 1) on a small base."""

from __future__ import annotations

import argparse
from typing import Any

from effnet._util.console import print_json
from effnet._util.validation import finite_number, whole_number
from effnet.commands._trials import (
    COEFFICIENT,
    TARGET,
    Progress,
    accuracy_columns,
    accuracy_header,
    add_trial_flags,
    base_spec,
    lines,
    partial,
    pct_sd,
    runner_config,
    seeds,
    train_config,
)

NAME = "search"
HELP = "grid-search alpha, beta, gamma (compound scaling step 1)"

_STEP = finite_number(0.001, 10.0)
_TOLERANCE = finite_number(0.0, 1.0, above=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `search` and `study`."""
    search = subparsers.add_parser(NAME, help=HELP)
    search.add_argument(
        "--alpha",
        type=COEFFICIENT,
        nargs=2,
        default=(1.0, 1.5),
        metavar=("LOW", "HIGH"),
        help="depth coefficient range (default 1 1.5)",
    )
    search.add_argument(
        "--beta",
        type=COEFFICIENT,
        nargs=2,
        default=(1.0, 1.3),
        metavar=("LOW", "HIGH"),
        help="width coefficient range (default 1 1.3)",
    )
    search.add_argument(
        "--gamma",
        type=COEFFICIENT,
        nargs=2,
        default=(1.0, 1.3),
        metavar=("LOW", "HIGH"),
        help="resolution coefficient range (default 1 1.3)",
    )
    search.add_argument("--step", type=_STEP, default=0.1, help="grid step (default 0.1)")
    search.add_argument(
        "--target",
        type=TARGET,
        default=2.0,
        help="multiply-add growth per unit phi, alpha*beta^2*gamma^2 (default 2, the paper's)",
    )
    search.add_argument("--tolerance", type=_TOLERANCE, default=0.05, help="relative tolerance on the target (0.05)")
    search.add_argument(
        "--max-candidates", type=whole_number(1, 100_000), default=500, help="refuse grids larger than this"
    )
    search.add_argument("--no-base", action="store_true", help="do not train the unscaled base as a reference")
    add_trial_flags(search, default_out="runs/search")
    search.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train every grid point (resumable), print the ranking and the `effnet scale` command of the winner."""
    from effnet.search.grid import GridConfig, make_grid
    from effnet.search.grid_search import SearchConfig, run_search

    grid = GridConfig(
        tuple(args.alpha),
        tuple(args.beta),
        tuple(args.gamma),
        args.step,
        args.target,
        args.tolerance,
        args.max_candidates,
    )
    candidates = make_grid(grid)
    config = SearchConfig(
        base=base_spec(args),
        base_ref=args.base,
        grid=grid,
        train=train_config(args),
        runner=runner_config(args),
        out_dir=args.out,
        depth_rounding=args.depth_rounding,
        include_base=not args.no_base,
        restart=args.restart,
        seeds=seeds(args),
    )
    total = (len(candidates) + (0 if args.no_base else 1)) * len(config.training_seeds())
    print(
        f"searching {len(candidates)} candidates (alpha*beta^2*gamma^2 within {grid.tolerance:.0%} of "
        f"{grid.target:g}) on {config.base.name} at {config.base.resolution}px, {config.train.epochs} epochs each, "
        f"{config.runner.workers} at a time; results in {args.out}",
        file=lines(args),
    )
    with Progress(total, "search", args) as progress:
        result = run_search(config, on_record=progress)
    if args.json:
        print_json(result)
    else:
        _print_search(result)
    print(f"{progress.ran} trials trained now, {result.resumed} taken from the journal", file=lines(args))
    if result.verdict is not None and partial("search", result.failed, args):
        return 1
    return 0 if result.verdict is not None else 1


def _print_search(result: Any) -> None:
    """The ranking table, the files written and the verdict (a winner only when it beats the noise)."""
    rows = ([result.base] if result.base else []) + result.rows
    groups = any(row.outline_acc is not None for row in rows)
    print(
        f"\n{'rank':>4} {'alpha':>5} {'beta':>5} {'gamma':>5} {'a*b2*g2':>7} {'MACs x':>6} {'res':>4} "
        f"{'blocks':>6} {'params':>9} {accuracy_header(groups)}  status"
    )
    for row in rows:
        rank = "base" if result.base is row else (str(row.rank) if row.rank else "-")
        status = row.status if row.status == "ok" else f"{row.status}: {row.error}"
        print(
            f"{rank:>4} {row.alpha:5.2f} {row.beta:5.2f} {row.gamma:5.2f} {row.formula_ratio:7.3f} "
            f"{row.macs_ratio:6.2f} {row.resolution:4d} {row.num_blocks:6d} {row.params:9,d} "
            f"{accuracy_columns(row, groups)}  {status}"
        )
    if result.resumed:
        print(f"({result.resumed} trials resumed from the journal, not re-run)")
    for kind, path in result.files.items():
        print(f"{kind}: {path}")
    if result.verdict is None:
        print("no trial finished successfully; see the errors above")
    elif result.best:
        best = result.best
        label = f"best of the {len(result.rows) - len(result.failed)} that finished" if result.failed else "best"
        print(
            f"\n{label}: alpha={best.alpha:g} beta={best.beta:g} gamma={best.gamma:g} "
            f"(val acc {pct_sd(best.val_acc, best.val_acc_sd)}%, {best.macs_ratio:.2f}x the base's multiply-adds;"
            f" {result.verdict.message})"
        )
        print(f"step 2, scale up with it:\n  {result.scale_command.replace('--phi 1', '--phi PHI')}")
    else:  # no `effnet scale` line: the ranking above is noise
        print(f"\n{result.verdict.message}")
