"""What `effnet search` and `effnet study` share: the base network, the training budget, the execution flags,
the progress over trials and the accuracy columns of their tables."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any, TextIO

from effnet._util.validation import finite_number, image_side, thread_count, whole_number
from effnet.commands._flags import add_data_flags

# Every numeric flag is finite and in range when parsed (effnet._util.validation); the grid and study configs then check
# how the values fit together (a range reversed, a grid too fine).
COEFFICIENT = finite_number(0.0, 100.0, above=True)
TARGET = finite_number(1.0, 1000.0, above=True)  # a 1000x multiply-add model is past anything trainable here
_SEED = whole_number(0, 2**32 - 1)
_EPOCHS = whole_number(1, 100_000)
_BATCH = whole_number(1, 65_536)
_LR = finite_number(0.0, 100.0, above=True)
_WORKERS = whole_number(1, 1024)


def add_trial_flags(parser: argparse.ArgumentParser, default_out: str) -> None:
    """The base network, the training budget (the same for every trial), execution and output flags."""
    from effnet.models.scaling import DEPTH_ROUNDING  # pure Python: no torch

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
    _add_budget_flags(parser.add_argument_group("training budget (the same for every trial)"))
    _add_execution_flags(parser.add_argument_group("execution"), default_out)
    out = parser.add_argument_group("output")
    out.add_argument("--quiet", action="store_true", help="no progress bar (the per-trial lines still print)")
    out.add_argument("--json", action="store_true", help="print the result as JSON on stdout (other lines on stderr)")


def _add_budget_flags(budget: Any) -> None:
    budget.add_argument(
        "--config",
        help="a training YAML file (as `effnet train` writes) instead of the built-in "
        "short recipe; the flags below still override it",
    )
    add_data_flags(budget, split=False)
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


def _add_execution_flags(run: Any, default_out: str) -> None:
    from effnet.search.runner import BACKENDS

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


def base_spec(args: argparse.Namespace) -> Any:
    """The --base network's spec (at --base-resolution)."""
    from effnet.models.registry import get_spec, list_models, resolve_spec
    from effnet.search.trial import proxy_spec

    if args.base == "proxy":
        spec = proxy_spec()
    elif args.base in list_models() or args.base.endswith(".json"):
        spec = resolve_spec(args.base)
    else:
        spec = get_spec(args.base)  # raises with close matches
    return spec.replace(resolution=args.base_resolution) if args.base_resolution else spec


def train_config(args: argparse.Namespace) -> Any:
    """The training budget of every trial: --config or the short proxy recipe, with the budget flags over it."""
    from effnet.search.trial import proxy_train_config
    from effnet.train.config import TrainConfig

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


def seeds(args: argparse.Namespace) -> tuple[int, ...] | None:
    return tuple(args.seeds) if args.seeds else None


def seed_text(seeds: tuple[int, ...]) -> str:
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {' '.join(map(str, seeds))} (mean +- sd)"


def runner_config(args: argparse.Namespace) -> Any:
    """How trials run (Ray or one after another), with a note when the choice differs from what was asked."""
    from effnet.search.runner import NO_RAY_NOTE, RunnerConfig, resolve_search_backend

    runner = RunnerConfig(
        backend=args.backend,
        workers=args.workers,
        threads=args.threads,
        address=args.address,
        retry_failed=args.retry_failed,
    )
    backend = resolve_search_backend(runner)
    if backend == "sequential" and args.backend == "auto":
        print(f"note: {NO_RAY_NOTE}", file=lines(args))
    elif backend == "sequential" and args.workers > 1:
        print(
            f"note: --backend sequential runs one trial at a time; --workers {args.workers} is ignored",
            file=lines(args),
        )
    return runner


def lines(args: argparse.Namespace) -> TextIO:
    """Where the human-readable lines go: stderr when stdout carries --json."""
    return sys.stderr if args.json else sys.stdout


class Progress:
    """A bar over trials (on a terminal) and one line per finished trial."""

    def __init__(self, total: int, label: str, args: argparse.Namespace) -> None:
        from tqdm import tqdm

        from effnet._util.console import show_bar

        self.bar = tqdm(total=total, desc=label, unit="trial", dynamic_ncols=True, disable=not show_bar(not args.quiet))
        self.stream = lines(args)
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
        from tqdm import tqdm

        tqdm.write(f"{'resumed ' if resumed else 'finished'} {record['trial_id']}: {text}", file=self.stream)
        self.bar.update(1)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def pct_sd(mean: float | None, sd: float | None) -> str:
    """'74.3' for one seed, '74.3+-1.2' for several."""
    return _pct(mean) if sd is None or mean is None else f"{100 * mean:.1f}+-{100 * sd:.1f}"


def accuracy_columns(row: Any, has_groups: bool) -> str:
    text = f"{pct_sd(row.val_acc, row.val_acc_sd):>11}"
    if has_groups:
        text += f" {pct_sd(row.outline_acc, row.outline_acc_sd):>11} {pct_sd(row.fill_acc, row.fill_acc_sd):>11}"
    return text


def accuracy_header(has_groups: bool) -> str:
    return f"{'val acc':>11}" + (f" {'outline ok':>11} {'fill ok':>11}" if has_groups else "")


def partial(command: str, failed: tuple[str, ...], args: argparse.Namespace) -> bool:
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
