"""Run trials sequentially or on Ray, journaling each as it finishes; failures are recorded, not raised."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import random
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from effnet.models.specs import NetSpec
from effnet.search.journal import Journal

BACKENDS = ("auto", "ray", "sequential")
NO_RAY_NOTE = 'Ray is not installed: running trials one after another (pip install "effnet[ray]" to parallelize)'


@dataclass(frozen=True)
class TrialTask:
    """Everything one trial needs; plain data so it pickles to a Ray worker."""

    trial_id: str
    spec: NetSpec
    settings: Any  # what the trial function trains with (e.g. a TrialBudget); must pickle
    seed: int
    run_dir: str
    threads: int = 1


TrialFn = Callable[[TrialTask], dict[str, Any]]


@dataclass(frozen=True)
class RunnerConfig:
    """Where trials run: `workers` at a time, each with `threads` torch threads."""

    backend: str = "auto"  # auto: Ray when installed, else sequential
    workers: int = 1
    threads: int | None = None  # per trial; default: this machine's cores / workers
    address: str | None = None  # an existing Ray cluster ("auto" or "host:port"); None starts a local one
    retry_failed: bool = False  # rerun trials the journal records as failed

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    def threads_per_trial(self) -> int:
        """Torch threads each trial uses, so `workers` trials share the cores without oversubscribing."""
        return self.threads or max(1, (os.cpu_count() or 1) // self.workers)


def ray_available() -> bool:
    """Whether the optional `ray` extra is installed."""
    return importlib.util.find_spec("ray") is not None


def resolve_search_backend(config: RunnerConfig) -> str:
    """'ray' or 'sequential'; asking for Ray without it installed is a user error."""
    if config.backend == "ray" and not ray_available():
        raise ValueError('--backend ray needs Ray: pip install "effnet[ray]" (or use --backend sequential)')
    if config.backend == "auto":
        return "ray" if ray_available() else "sequential"
    return config.backend


def fit_threads(config: RunnerConfig, node_cpus: list[float]) -> int:
    """Threads per trial on a cluster whose alive nodes have `node_cpus` CPUs: a trial must fit on one node (Ray
    never schedules a task asking more CPUs than any node has, it waits forever), and `workers` of them at once."""
    largest = int(max(node_cpus, default=0))
    if largest < 1:
        raise ValueError("the Ray cluster has no node with a CPU; add workers with `ray start --address ...`")
    if config.threads is not None:
        if config.threads > largest:
            raise ValueError(
                f"--threads {config.threads} is more than the largest Ray node's {largest} CPU(s), so no "
                f"trial could ever be scheduled; use --threads {largest} or less"
            )
        return config.threads
    return max(1, min(largest, int(sum(node_cpus)) // config.workers))


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast (ValueError) when nothing listens at a Ray address "host:port" (ray.init would wait minutes)."""
    if address == "auto" or address.startswith("ray://") or ":" not in address:
        return  # "auto" is looked up by Ray itself; client addresses fail fast on their own
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except ValueError:
        raise ValueError(f"--address {address!r} is not host:port") from None
    except OSError as err:
        raise ValueError(
            f"no Ray cluster answers at {address} ({err.strerror or err}); start one with "
            "`ray start --head --port PORT` or leave out --address to run locally"
        ) from None


def execute_trial(trial_fn: TrialFn, task: TrialTask) -> dict[str, Any]:
    """Seed everything, run one trial and turn any exception into a failed record (runs inside a worker)."""
    torch.set_num_threads(task.threads)
    random.seed(task.seed)
    np.random.seed(task.seed % 2**32)
    torch.manual_seed(task.seed)
    started, cpu_started = time.time(), time.process_time()
    try:
        metrics = trial_fn(task)
        status, error = "ok", None
    except Exception as err:  # noqa: BLE001 - one bad candidate must not end the search
        metrics, status = {}, "failed"
        error = f"{type(err).__name__}: {err}\n" + "".join(traceback.format_exc(limit=-3))
    return {
        "trial_id": task.trial_id,
        "status": status,
        "metrics": metrics,
        "error": error,
        "seconds": round(time.time() - started, 3),
        # CPU time of the trial's process (all its threads): what the trial costs on an idle machine, whatever
        # else shared the cores while it ran.
        "cpu_seconds": round(time.process_time() - cpu_started, 3),
        "threads": task.threads,
        "pid": os.getpid(),
    }


def run_trials(
    tasks: Iterable[TrialTask],
    trial_fn: TrialFn,
    journal: Journal,
    config: RunnerConfig | None = None,
    *,
    on_record: Callable[[dict[str, Any], bool], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run every task the journal has not finished; returns all records by trial id.

    `on_record(record, resumed)` is called for each trial as it finishes (resumed=True for journaled ones).
    """
    tasks = list(tasks)
    config = config or RunnerConfig()
    done = journal.finished()
    if config.retry_failed:
        done = {key: rec for key, rec in done.items() if rec["status"] == "ok"}
    pending = [task for task in tasks if task.trial_id not in done]
    records = {task.trial_id: done[task.trial_id] for task in tasks if task.trial_id in done}
    for record in records.values():
        if on_record:
            on_record(record, True)

    def finish(record: dict[str, Any]) -> None:
        journal.record(record)
        records[record["trial_id"]] = record
        if on_record:
            on_record(record, False)

    if pending:
        if resolve_search_backend(config) == "ray":
            _run_on_ray(pending, trial_fn, config, finish)
        else:
            for task in pending:
                finish(execute_trial(trial_fn, task))
    return {task.trial_id: records[task.trial_id] for task in tasks}


def _start_ray(config: RunnerConfig, threads: int) -> bool:
    """Connect to `config.address` or start a local Ray; False when Ray was already running in this process."""
    import ray

    if ray.is_initialized():
        return False
    # Ray runs its workers at nice 15 unless told otherwise; on a machine shared with other jobs that starves
    # the trials (measured: ~10% of a core each under load). Trials are the work, so run them at normal
    # priority, like the sequential backend does; an explicit RAY_worker_niceness still wins.
    os.environ.setdefault("RAY_worker_niceness", "0")
    if config.address:
        check_reachable(config.address)
        ray.init(address=config.address, logging_level=logging.WARNING, log_to_driver=False)
    else:
        ray.init(
            num_cpus=config.workers * threads,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    return True


def _run_on_ray(
    tasks: list[TrialTask], trial_fn: TrialFn, config: RunnerConfig, finish: Callable[[dict[str, Any]], None]
) -> None:
    import ray

    module = getattr(trial_fn, "__module__", "")
    if module and module != "__main__" and not module.startswith("effnet.") and module in sys.modules:
        # Workers may not import the caller's module (a test file, a script): ship it by value.
        ray.cloudpickle.register_pickle_by_value(sys.modules[module])
    threads = tasks[0].threads
    started_here = _start_ray(config, threads)
    if config.address or not started_here:  # someone else's cluster: fit the trials to its nodes
        node_cpus = [node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node.get("Alive")]
        threads = fit_threads(config, node_cpus)
        tasks = [dataclasses.replace(task, threads=threads) for task in tasks]
    # Trials that train on a GPU ask Ray for a share of it, so Ray makes it visible to them (Ray hides GPUs from
    # tasks that ask for none); `workers` trials then share one GPU.
    on_gpu = str(getattr(tasks[0].settings, "device", "cpu")).startswith("cuda")
    remote = ray.remote(num_cpus=threads, num_gpus=1 / config.workers if on_gpu else 0, max_retries=0)(execute_trial)
    try:
        queue: list[TrialTask] = list(tasks)
        running: dict[Any, TrialTask] = {}
        while queue or running:
            # At most `workers` trials in flight, so results (and the journal) advance steadily.
            while queue and len(running) < config.workers:
                task = queue.pop(0)
                running[remote.remote(trial_fn, task)] = task
            ready, _ = ray.wait(list(running), num_returns=1)
            task = running.pop(ready[0])
            try:
                record = ray.get(ready[0])
            except ray.exceptions.RayError as err:  # the worker process itself died (OOM kill, segfault)
                record = {
                    "trial_id": task.trial_id,
                    "status": "failed",
                    "metrics": {},
                    "error": f"{type(err).__name__}: {err}",
                    "seconds": None,
                    "threads": threads,
                }
            finish(record)
    finally:
        if started_here:
            ray.shutdown()
