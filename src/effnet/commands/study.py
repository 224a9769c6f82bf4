"""`effnet study`: compound scaling against width-, depth- and resolution-only scaling at equal multiply-adds."""

from __future__ import annotations

import argparse
from typing import Any

from effnet._util.console import print_json
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
    seed_text,
    seeds,
    train_config,
)

NAME = "study"
HELP = "compound vs width/depth/resolution-only scaling at equal cost"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `study`."""
    from effnet.models.scaling import ALPHA, BETA, GAMMA  # pure Python: no torch
    from effnet.search.study import METHODS

    study = subparsers.add_parser(NAME, help=HELP)
    study.add_argument(
        "--targets",
        type=TARGET,
        nargs="+",
        default=[2.0, 4.0],
        help="multiply-add targets as multiples of the base (default 2 4)",
    )
    study.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="scaling methods")
    study.add_argument("--alpha", type=COEFFICIENT, default=ALPHA, help=f"compound depth coefficient ({ALPHA})")
    study.add_argument("--beta", type=COEFFICIENT, default=BETA, help=f"compound width coefficient ({BETA})")
    study.add_argument("--gamma", type=COEFFICIENT, default=GAMMA, help=f"compound resolution coefficient ({GAMMA})")
    add_trial_flags(study, default_out="runs/study")
    study.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train the base and every scaled model (resumable) and print which scaling is most accurate per target."""
    from effnet.search.study import StudyConfig, run_study

    config = StudyConfig(
        base=base_spec(args),
        targets=tuple(args.targets),
        methods=tuple(args.methods),
        coefficients=(args.alpha, args.beta, args.gamma),
        train=train_config(args),
        runner=runner_config(args),
        out_dir=args.out,
        depth_rounding=args.depth_rounding,
        restart=args.restart,
        seeds=seeds(args),
    )
    total = (1 + len(set(config.targets)) * len(config.methods)) * len(config.training_seeds())
    print(
        f"study on {config.base.name} at {config.base.resolution}px: {', '.join(config.methods)} scaled to "
        f"{', '.join(f'{t:g}x' for t in config.targets)} its multiply-adds, {config.train.epochs} epochs each, "
        f"{seed_text(config.training_seeds())}; results in {args.out}",
        file=lines(args),
    )
    with Progress(total, "study", args) as progress:
        result = run_study(config, on_record=progress)
    if args.json:
        print_json(
            {
                "rows": result.rows,
                "failed": result.failed,
                "winners": result.winners(),
                "verdicts": result.verdicts(),
                "num_val": result.num_val,
                "resumed": result.resumed,
                "files": result.files,
            }
        )
    else:
        _print_study(result)
    print(f"{progress.ran} trials trained now, {result.resumed} taken from the journal", file=lines(args))
    if any(row.status == "ok" for row in result.rows) and partial("study", result.failed, args):
        return 1
    return 0 if any(row.status == "ok" for row in result.rows) else 1


def _print_study(result: Any) -> None:
    """The table of scaled models, the most accurate method per target (beside the noise) and the files."""
    groups = any(row.outline_acc is not None for row in result.rows)
    print(
        f"\n{'method':>10} {'target':>6} {'got':>6} {'width':>6} {'depth':>6} {'res':>4} {'blocks':>6} "
        f"{'MACs (M)':>9} {'params':>9} {accuracy_header(groups)}  status"
    )
    for row in result.rows:
        status = row.status if row.status == "ok" else f"{row.status}: {row.error}"
        flag = "" if row.matched else " (off target by more than 10%)"
        print(
            f"{row.method:>10} {row.target:6.2f} {row.ratio:6.2f} {row.width_mult:6.3f} {row.depth_mult:6.3f} "
            f"{row.resolution:4d} {row.num_blocks:6d} {row.macs / 1e6:9.2f} {row.params:9,d} "
            f"{accuracy_columns(row, groups)}  {status}{flag}"
        )
    if result.resumed:
        print(f"({result.resumed} trials resumed from the journal, not re-run)")
    for target, verdict in result.verdicts().items():
        if verdict.winner is None:
            print(f"at {target:g}x multiply-adds: {verdict.message}")
            continue
        ranked = sorted(
            (row for row in result.rows if row.target == target and row.val_acc is not None and row.method != "base"),
            key=lambda row: -(row.val_acc or 0.0),
        )
        runner_up = (
            f"; next: {ranked[1].method} {pct_sd(ranked[1].val_acc, ranked[1].val_acc_sd)}" if len(ranked) > 1 else ""
        )
        print(
            f"most accurate at {target:g}x multiply-adds: {ranked[0].method} "
            f"{pct_sd(ranked[0].val_acc, ranked[0].val_acc_sd)}{runner_up} ({verdict.message})"
        )
    for kind, path in result.files.items():
        print(f"{kind}: {path}")
