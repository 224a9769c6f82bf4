"""`effnet search` (the alpha/beta/gamma grid search) and `effnet study` (compound vs single-dimension scaling)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any, TextIO

from tqdm import tqdm

from effnet._util.console import print_json, show_bar
from effnet._util.validation import finite_number, image_side, positive_int, thread_count, whole_number
from effnet.data import DATASET_NAMES
from effnet.models.registry import get_spec, list_models, resolve_spec
from effnet.models.scaling import ALPHA, BETA, DEPTH_ROUNDING, GAMMA
from effnet.models.specs import NetSpec
from effnet.search.grid import GridConfig, make_grid
from effnet.search.grid_search import SearchConfig, SearchResult, run_search
from effnet.search.runner import BACKENDS, NO_RAY_NOTE, RunnerConfig, resolve_backend
from effnet.search.study import METHODS, StudyConfig, StudyResult, run_study
from effnet.search.trial import proxy_spec, proxy_train_config
from effnet.train import TrainConfig

# Every numeric flag is finite and in range when parsed (effnet._util.validation); the grid and study configs then check
# how the values fit together (a range reversed, a grid too fine).
_COEFFICIENT = finite_number(0.0, 100.0, above=True)
_STEP = finite_number(0.001, 10.0)
_TARGET = finite_number(1.0, 1000.0, above=True)  # a 1000x multiply-add model is past anything trainable here
_TOLERANCE = finite_number(0.0, 1.0, above=True)
_SEED = whole_number(0, 2**32 - 1)
_EPOCHS = whole_number(1, 100_000)
_BATCH = whole_number(1, 65_536)
_LR = finite_number(0.0, 100.0, above=True)
_WORKERS = whole_number(1, 1024)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `search` and `study`."""
    search = subparsers.add_parser("search", help="grid-search alpha, beta, gamma (compound scaling step 1)")
    search.add_argument(
        "--alpha",
        type=_COEFFICIENT,
        nargs=2,
        default=(1.0, 1.5),
        metavar=("LOW", "HIGH"),
        help="depth coefficient range (default 1 1.5)",
    )
    search.add_argument(
        "--beta",
        type=_COEFFICIENT,
        nargs=2,
        default=(1.0, 1.3),
        metavar=("LOW", "HIGH"),
        help="width coefficient range (default 1 1.3)",
    )
    search.add_argument(
        "--gamma",
        type=_COEFFICIENT,
        nargs=2,
        default=(1.0, 1.3),
        metavar=("LOW", "HIGH"),
        help="resolution coefficient range (default 1 1.3)",
    )
    search.add_argument("--step", type=_STEP, default=0.1, help="grid step (default 0.1)")
    search.add_argument(
        "--target",
        type=_TARGET,
        default=2.0,
        help="multiply-add growth per unit phi, alpha*beta^2*gamma^2 (default 2, the paper's)",
    )
    search.add_argument("--tolerance", type=_TOLERANCE, default=0.05, help="relative tolerance on the target (0.05)")
    search.add_argument(
        "--max-candidates", type=whole_number(1, 100_000), default=500, help="refuse grids larger than this"
    )
    search.add_argument("--no-base", action="store_true", help="do not train the unscaled base as a reference")
    _add_common(search, default_out="runs/search")
    search.set_defaults(func=_search)

    study = subparsers.add_parser("study", help="compound vs width/depth/resolution-only scaling at equal cost")
    study.add_argument(
        "--targets",
        type=_TARGET,
        nargs="+",
        default=[2.0, 4.0],
        help="multiply-add targets as multiples of the base (default 2 4)",
    )
    study.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="scaling methods")
    study.add_argument("--alpha", type=_COEFFICIENT, default=ALPHA, help=f"compound depth coefficient ({ALPHA})")
    study.add_argument("--beta", type=_COEFFICIENT, default=BETA, help=f"compound width coefficient ({BETA})")
    study.add_argument("--gamma", type=_COEFFICIENT, default=GAMMA, help=f"compound resolution coefficient ({GAMMA})")
    _add_common(study, default_out="runs/study")
    study.set_defaults(func=_study)


def _add_common(parser: argparse.ArgumentParser, default_out: str) -> None:
    parser.add_argument(
        "--base",
        default="proxy",
        help="base network: 'proxy' (B0 at half width/depth, 64 px: fits 2 CPU cores), a registry "
        "name (efficientnet_b0, resnet50, mobilenetv2, ...) or a spec file",
    )
    parser.add_argument(
        "--base-resolution", type=image_side, help="train the base at this resolution instead of its own"
    )
    parser.add_argument(
        "--depth-rounding",
        choices=DEPTH_ROUNDING,
        default="round",
        help="repeats rounding when scaling depth (default round: fine steps on small bases)",
    )
    budget = parser.add_argument_group("training budget (the same for every trial)")
    budget.add_argument(
        "--config",
        help="a training YAML file (as `effnet train` writes) instead of the built-in "
        "short recipe; the flags below still override it",
    )
    budget.add_argument("--data", choices=DATASET_NAMES, help="dataset (default: the built-in shapes)")
    budget.add_argument("--data-root", help="folder / CIFAR location")
    budget.add_argument("--num-train", type=positive_int, help="shapes: training images (default 5000)")
    budget.add_argument("--num-val", type=positive_int, help="shapes: validation images (default 1000)")
    budget.add_argument("--epochs", type=_EPOCHS, help="epochs per trial (default 6)")
    budget.add_argument("--batch-size", type=_BATCH, help="batch size (default 50)")
    budget.add_argument("--lr", type=_LR, help="peak learning rate")
    budget.add_argument("--seed", type=_SEED, help="data seed, and the training seed without --seeds (default 0)")
    budget.add_argument(
        "--device",
        help="where each trial trains: cpu (default) or cuda (Ray workers then share "
        "the GPU, one 1/workers share each)",
    )
    budget.add_argument(
        "--seeds",
        type=_SEED,
        nargs="+",
        metavar="SEED",
        help="train every model once per training seed on the same images (e.g. 0 1 2); tables show mean +- sd",
    )
    run = parser.add_argument_group("execution")
    run.add_argument(
        "--backend", choices=BACKENDS, default="auto", help="auto: Ray when installed, else one trial after another"
    )
    run.add_argument("--workers", type=_WORKERS, default=1, help="trials running at once (default 1)")
    run.add_argument("--threads", type=thread_count, help="torch threads per trial (default: cores / workers)")
    run.add_argument("--address", help="an existing Ray cluster ('auto' or host:port); default: start a local one")
    run.add_argument(
        "--out",
        default=default_out,
        help=f"results folder (default {default_out}); rerunning with the same folder resumes",
    )
    run.add_argument("--restart", action="store_true", help="discard the folder's finished trials")
    run.add_argument("--retry-failed", action="store_true", help="rerun trials that failed last time")
    out = parser.add_argument_group("output")
    out.add_argument("--quiet", action="store_true", help="no progress bar (the per-trial lines still print)")
    out.add_argument("--json", action="store_true", help="print the result as JSON on stdout (other lines on stderr)")


def _base(args: argparse.Namespace) -> NetSpec:
    if args.base == "proxy":
        spec = proxy_spec()
    elif args.base in list_models() or args.base.endswith(".json"):
        spec = resolve_spec(args.base)
    else:
        spec = get_spec(args.base)  # raises with close matches
    return spec.replace(resolution=args.base_resolution) if args.base_resolution else spec


def _train_config(args: argparse.Namespace) -> TrainConfig:
    train = TrainConfig.from_yaml(args.config) if args.config else proxy_train_config()
    data: dict[str, Any] = {
        "name": args.data,
        "root": args.data_root,
        "num_train": args.num_train,
        "num_val": args.num_val,
        "seed": args.seed,
    }
    data = {key: value for key, value in data.items() if value is not None}
    changes: dict[str, Any] = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "device": args.device,
    }
    changes = {key: value for key, value in changes.items() if value is not None}
    if str(changes.get("device", "")).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}: no GPU is visible here; use --device cpu")
    data_config = replace(train.data, **data)
    # Each trial trains and evaluates at its own resolution, whatever the YAML file said.
    return train.replace(data=data_config, image_size=None, eval_size=None, **changes)


def _seeds(args: argparse.Namespace) -> tuple[int, ...] | None:
    return tuple(args.seeds) if args.seeds else None


def _seed_text(seeds: tuple[int, ...]) -> str:
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {' '.join(map(str, seeds))} (mean +- sd)"


def _runner(args: argparse.Namespace) -> RunnerConfig:
    runner = RunnerConfig(
        backend=args.backend,
        workers=args.workers,
        threads=args.threads,
        address=args.address,
        retry_failed=args.retry_failed,
    )
    backend = resolve_backend(runner)
    if backend == "sequential" and args.backend == "auto":
        print(f"note: {NO_RAY_NOTE}", file=_lines(args))
    elif backend == "sequential" and args.workers > 1:
        print(
            f"note: --backend sequential runs one trial at a time; --workers {args.workers} is ignored",
            file=_lines(args),
        )
    return runner


def _lines(args: argparse.Namespace) -> TextIO:
    """Where the human-readable lines go: stderr when stdout carries --json."""
    return sys.stderr if args.json else sys.stdout


class _Progress:
    """A bar over trials (on a terminal) and one line per finished trial."""

    def __init__(self, total: int, label: str, args: argparse.Namespace) -> None:
        self.bar = tqdm(total=total, desc=label, unit="trial", dynamic_ncols=True, disable=not show_bar(not args.quiet))
        self.stream = _lines(args)
        self.ran = 0  # trials trained by this invocation (not taken from the journal)

    def __call__(self, record: dict[str, Any], resumed: bool) -> None:
        self.ran += not resumed
        metrics = record.get("metrics") or {}
        if record["status"] == "ok":
            text = f"val acc {100 * metrics.get('final_val_acc', 0.0):.1f}%"
            if "outline_acc" in metrics:
                text += f" (outline {100 * metrics['outline_acc']:.1f}%, fill {100 * metrics['fill_acc']:.1f}%)"
            text += f" in {record.get('seconds') or 0:.0f}s"
        else:
            text = "FAILED: " + (record.get("error") or "").splitlines()[0]
        tqdm.write(f"{'resumed ' if resumed else 'finished'} {record['trial_id']}: {text}", file=self.stream)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _pct_sd(mean: float | None, sd: float | None) -> str:
    """'74.3' for one seed, '74.3+-1.2' for several."""
    return _pct(mean) if sd is None or mean is None else f"{100 * mean:.1f}+-{100 * sd:.1f}"


def _accuracy_columns(row: Any, has_groups: bool) -> str:
    text = f"{_pct_sd(row.val_acc, row.val_acc_sd):>11}"
    if has_groups:
        text += f" {_pct_sd(row.outline_acc, row.outline_acc_sd):>11} {_pct_sd(row.fill_acc, row.fill_acc_sd):>11}"
    return text


def _accuracy_header(has_groups: bool) -> str:
    return f"{'val acc':>11}" + (f" {'outline ok':>11} {'fill ok':>11}" if has_groups else "")


def _search(args: argparse.Namespace) -> int:
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
        base=_base(args),
        base_ref=args.base,
        grid=grid,
        train=_train_config(args),
        runner=_runner(args),
        out_dir=args.out,
        depth_rounding=args.depth_rounding,
        include_base=not args.no_base,
        restart=args.restart,
        seeds=_seeds(args),
    )
    total = (len(candidates) + (0 if args.no_base else 1)) * len(config.training_seeds())
    print(
        f"searching {len(candidates)} candidates (alpha*beta^2*gamma^2 within {grid.tolerance:.0%} of "
        f"{grid.target:g}) on {config.base.name} at {config.base.resolution}px, {config.train.epochs} epochs each, "
        f"{config.runner.workers} at a time; results in {args.out}",
        file=_lines(args),
    )
    progress = _Progress(total, "search", args)
    try:
        result = run_search(config, on_record=progress)
    finally:
        progress.close()
    if args.json:
        print_json(result)
    else:
        _print_search(result)
    print(f"{progress.ran} trials trained now, {result.resumed} taken from the journal", file=_lines(args))
    if result.verdict is not None and _partial("search", result.failed, args):
        return 1
    return 0 if result.verdict is not None else 1


def _print_search(result: SearchResult) -> None:
    rows = ([result.base] if result.base else []) + result.rows
    groups = any(row.outline_acc is not None for row in rows)
    print(
        f"\n{'rank':>4} {'alpha':>5} {'beta':>5} {'gamma':>5} {'a*b2*g2':>7} {'MACs x':>6} {'res':>4} "
        f"{'blocks':>6} {'params':>9} {_accuracy_header(groups)}  status"
    )
    for row in rows:
        rank = "base" if result.base is row else (str(row.rank) if row.rank else "-")
        status = row.status if row.status == "ok" else f"{row.status}: {row.error}"
        print(
            f"{rank:>4} {row.alpha:5.2f} {row.beta:5.2f} {row.gamma:5.2f} {row.formula_ratio:7.3f} "
            f"{row.macs_ratio:6.2f} {row.resolution:4d} {row.num_blocks:6d} {row.params:9,d} "
            f"{_accuracy_columns(row, groups)}  {status}"
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
            f"(val acc {_pct_sd(best.val_acc, best.val_acc_sd)}%, {best.macs_ratio:.2f}x the base's multiply-adds;"
            f" {result.verdict.message})"
        )
        print(f"step 2, scale up with it:\n  {result.scale_command.replace('--phi 1', '--phi PHI')}")
    else:  # no `effnet scale` line: the ranking above is noise
        print(f"\n{result.verdict.message}")


def _study(args: argparse.Namespace) -> int:
    config = StudyConfig(
        base=_base(args),
        targets=tuple(args.targets),
        methods=tuple(args.methods),
        coefficients=(args.alpha, args.beta, args.gamma),
        train=_train_config(args),
        runner=_runner(args),
        out_dir=args.out,
        depth_rounding=args.depth_rounding,
        restart=args.restart,
        seeds=_seeds(args),
    )
    total = (1 + len(set(config.targets)) * len(config.methods)) * len(config.training_seeds())
    print(
        f"study on {config.base.name} at {config.base.resolution}px: {', '.join(config.methods)} scaled to "
        f"{', '.join(f'{t:g}x' for t in config.targets)} its multiply-adds, {config.train.epochs} epochs each, "
        f"{_seed_text(config.training_seeds())}; results in {args.out}",
        file=_lines(args),
    )
    progress = _Progress(total, "study", args)
    try:
        result = run_study(config, on_record=progress)
    finally:
        progress.close()
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
    print(f"{progress.ran} trials trained now, {result.resumed} taken from the journal", file=_lines(args))
    if any(row.status == "ok" for row in result.rows) and _partial("study", result.failed, args):
        return 1
    return 0 if any(row.status == "ok" for row in result.rows) else 1


def _partial(command: str, failed: tuple[str, ...], args: argparse.Namespace) -> bool:
    """Say (one line on stderr) that some models' trials failed, so the result covers only the others."""
    if not failed:
        return False
    names = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
    print(
        f"effnet {command}: partial result: {len(failed)} model(s) failed ({names}), so the ranking covers only "
        f"the others; fix the cause (see the errors above) and rerun with --out {args.out} --retry-failed",
        file=sys.stderr,
    )
    return True


def _print_study(result: StudyResult) -> None:
    groups = any(row.outline_acc is not None for row in result.rows)
    print(
        f"\n{'method':>10} {'target':>6} {'got':>6} {'width':>6} {'depth':>6} {'res':>4} {'blocks':>6} "
        f"{'MACs (M)':>9} {'params':>9} {_accuracy_header(groups)}  status"
    )
    for row in result.rows:
        status = row.status if row.status == "ok" else f"{row.status}: {row.error}"
        flag = "" if row.matched else " (off target by more than 10%)"
        print(
            f"{row.method:>10} {row.target:6.2f} {row.ratio:6.2f} {row.width_mult:6.3f} {row.depth_mult:6.3f} "
            f"{row.resolution:4d} {row.num_blocks:6d} {row.macs / 1e6:9.2f} {row.params:9,d} "
            f"{_accuracy_columns(row, groups)}  {status}{flag}"
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
            f"; next: {ranked[1].method} {_pct_sd(ranked[1].val_acc, ranked[1].val_acc_sd)}" if len(ranked) > 1 else ""
        )
        print(
            f"most accurate at {target:g}x multiply-adds: {ranked[0].method} "
            f"{_pct_sd(ranked[0].val_acc, ranked[0].val_acc_sd)}{runner_up} ({verdict.message})"
        )
    for kind, path in result.files.items():
        print(f"{kind}: {path}")
