"""Worker processes that live no longer than the server that started them, and metrics folders that live no longer
than their server: nothing keeps serving, holds the port or fills /tmp after the parent is killed."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from effnet._util.fileio import pid_alive

PARENT_ENV = "EFFNET_SERVE_PARENT"  # the pid of the `effnet serve` process that supervises the workers
METRICS_PREFIX = "effnet-serve-metrics-"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCH_INTERVAL_S = 0.5
# After its parent is gone a worker drains like on SIGTERM; past the drain deadline and this margin it exits hard.
EXIT_MARGIN_S = 5.0


def die_with_parent(drain_seconds: float) -> None:
    """In a worker: SIGTERM when the supervising parent dies (even by SIGKILL), then a hard exit if draining
    overruns. Linux signals the worker itself (prctl PR_SET_PDEATHSIG); a thread watching the parent pid covers
    other systems and a parent that died before this ran."""
    parent = int(os.environ.get(PARENT_ENV, "0"))
    if parent <= 0:
        return  # started by something other than `effnet serve`: nothing to watch
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    threading.Thread(target=_watch, args=(parent, drain_seconds), name="parent-watch", daemon=True).start()


def _watch(parent: int, drain_seconds: float) -> None:
    while os.getppid() == parent:  # once the parent dies the worker is re-parented (to init or a subreaper)
        time.sleep(WATCH_INTERVAL_S)
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's graceful shutdown: answer what is in flight, close the port
    time.sleep(drain_seconds + EXIT_MARGIN_S)
    os._exit(1)  # still here: the shutdown hangs; leaving is what matters


def metrics_folder() -> str:
    """A new folder for the workers' shared metrics files, named after this process; leftovers of servers that
    were killed (their process gone) are removed first."""
    remove_dead_metrics_folders()
    return tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-")


def remove_dead_metrics_folders(root: str | None = None) -> list[Path]:
    """Remove the metrics folders whose server process no longer exists; returns them."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"{METRICS_PREFIX}*"):
        pid = folder.name[len(METRICS_PREFIX) :].split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
