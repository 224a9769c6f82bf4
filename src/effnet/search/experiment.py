"""The one experiment pipeline behind `effnet search` and `effnet study`: models x seeds, journaled, summarized.

Both commands train a list of specs under one budget. Each model runs once per training seed on the same data
(training and validation images come from the data seed, which does not change), and its seeds are summarized
as mean and sample standard deviation, so a gap between two models can be read against seed-to-seed variation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effnet.data import build_datasets
from effnet.models.specs import NetSpec
from effnet.search.journal import Journal, OutFolderLock
from effnet.search.runner import RunnerConfig, TrialFn, TrialTask, run_trials
from effnet.train import TrainConfig


@dataclass(frozen=True)
class Summary:
    """One model's trials over all seeds: mean and sample sd of each metric (sd None with a single seed)."""

    status: str  # "ok" when every seed finished, else "failed"
    seeds: tuple[int, ...]
    val_accs: tuple[float | None, ...]  # final val top-1 per seed, in seed order
    val_acc: float | None = None
    val_acc_sd: float | None = None
    best_val_acc: float | None = None  # mean over seeds of each run's best epoch
    outline_acc: float | None = None  # built-in shapes: share of val images whose outline is predicted right
    outline_acc_sd: float | None = None
    fill_acc: float | None = None  # ... and whose fill (plain / stripes) is predicted right
    fill_acc_sd: float | None = None
    seconds: float | None = None  # wall time, all seeds together
    cpu_seconds: float | None = None  # CPU time of the trial processes, all seeds together
    error: str | None = None  # first line of the first failure

    def fields(self) -> dict[str, Any]:
        """The columns a results row takes from the summary."""
        return {name: getattr(self, name) for name in SUMMARY_COLUMNS}


SUMMARY_COLUMNS = (
    "status",
    "seeds",
    "val_accs",
    "val_acc",
    "val_acc_sd",
    "best_val_acc",
    "outline_acc",
    "outline_acc_sd",
    "fill_acc",
    "fill_acc_sd",
    "seconds",
    "cpu_seconds",
    "error",
)


def mean_sd(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1); sd is None for fewer than two values."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def summarize(records: Sequence[dict[str, Any]], seeds: Sequence[int]) -> Summary:
    """Mean / sd over the seeds' journal records (metrics of failed seeds are left out)."""
    metrics = [record.get("metrics") or {} for record in records]
    ok = [m for record, m in zip(records, metrics, strict=True) if record["status"] == "ok"]
    errors = [record.get("error") for record in records if record["status"] != "ok"]

    def stats(key: str) -> tuple[float | None, float | None]:
        return mean_sd([m[key] for m in ok if m.get(key) is not None])

    val_acc, val_sd = stats("final_val_acc")
    outline, outline_sd = stats("outline_acc")
    fill, fill_sd = stats("fill_acc")

    def total(key: str) -> float | None:
        values = [record[key] for record in records if record.get(key) is not None]
        return round(sum(values), 3) if values else None

    return Summary(
        status="ok" if len(ok) == len(records) else "failed",
        seeds=tuple(seeds),
        val_accs=tuple(m.get("final_val_acc") for m in metrics),
        val_acc=val_acc,
        val_acc_sd=val_sd,
        best_val_acc=stats("best_val_acc")[0],
        outline_acc=outline,
        outline_acc_sd=outline_sd,
        fill_acc=fill,
        fill_acc_sd=fill_sd,
        seconds=total("seconds"),
        cpu_seconds=total("cpu_seconds"),
        error=(errors[0] or "failed").splitlines()[0] if errors else None,
    )


def check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    """The training seeds as a tuple; refuses an empty or repeated list."""
    if not seeds:
        raise ValueError("give at least one training seed, e.g. --seeds 0 1 2")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"training seeds must differ, got {list(seeds)}; e.g. --seeds 0 1 2")
    return tuple(int(seed) for seed in seeds)


def trial_key(model_id: str, seed: int, seeds: Sequence[int]) -> str:
    """The journal key of one model at one seed (the model id alone when there is a single seed)."""
    return model_id if len(seeds) == 1 else f"{model_id}-seed{seed}"


def num_classes_of(train: TrainConfig) -> int:
    """How many classes the budget's data has (sizes the classifier when counting multiply-adds)."""
    return build_datasets(train.data).num_classes


def data_sizes(train: TrainConfig) -> tuple[int, int]:
    """(classes, validation images) of the budget's data: chance level and sampling error of an accuracy."""
    pair = build_datasets(train.data)
    return pair.num_classes, len(pair.val)


def run_experiment(
    models: Sequence[tuple[str, NetSpec]],
    *,
    train: TrainConfig,
    runner: RunnerConfig,
    seeds: Sequence[int],
    out: Path,
    fingerprint: str,
    restart: bool = False,
    trial_fn: TrialFn,
    on_record: Callable[[dict[str, Any], bool], None] | None = None,
    command: str = "search",
) -> tuple[dict[str, Summary], int]:
    """Train every (model, seed), resuming from `out`/journal.jsonl; returns summaries by model id and the
    number of trials taken from the journal.

    Seed-major order: every model at the first seed, then every model at the next, so a stopped run already
    compares all models.
    """
    seeds = check_seeds(seeds)
    threads = runner.threads_per_trial()
    tasks = [
        TrialTask(trial_key(model_id, seed, seeds), spec, train, seed, str(out / "trials"), threads)
        for seed in seeds
        for model_id, spec in models
    ]
    with OutFolderLock(out, command):
        journal = Journal(out / "journal.jsonl", fingerprint, restart=restart)
        finished = journal.finished()
        # Trials taken from the journal: with --retry-failed its failed ones run again and are not "resumed".
        resumed = sum(
            1
            for task in tasks
            if task.trial_id in finished and not (runner.retry_failed and finished[task.trial_id]["status"] != "ok")
        )
        records = run_trials(tasks, trial_fn, journal, runner, on_record=on_record)
    summaries = {
        model_id: summarize([records[trial_key(model_id, seed, seeds)] for seed in seeds], seeds)
        for model_id, _ in models
    }
    return summaries, resumed
