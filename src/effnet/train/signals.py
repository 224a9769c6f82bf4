"""Stopping a run on request: Ctrl-C (SIGINT) and SIGTERM, what schedulers and containers send before SIGKILL.

The handlers only set a flag; the loop checkpoints its exact position at the next step boundary (every DDP rank
together) and stops. The process then exits with 128 + the signal number, the shell's convention for "ended by
that signal" (130 for Ctrl-C, 143 for SIGTERM): a scheduler sees an unfinished job, not a success, so
Kubernetes' restart / podFailurePolicy, SLURM requeue scripts and torchrun's worker restarts treat it as
preempted, and the rerun continues with `effnet train --resume`.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(signum: int) -> int:
    """128 + the signal number: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + int(signum)


class TrainingInterrupted(Exception):
    """Training stopped on request (Ctrl-C or SIGTERM) after checkpointing its exact position in `run_dir`."""

    def __init__(self, run_dir: Path | None, signum: int = signal.SIGINT, global_step: int | None = None) -> None:
        self.run_dir, self.signum = run_dir, int(signum)
        name = signal.Signals(signum).name
        at = f" at step {global_step}" if global_step is not None else ""
        saved = "checkpoint saved; " if run_dir else ""
        super().__init__(
            f"stopped by {name}{at}; {saved}continue with: effnet train --resume {run_dir or '<run folder>'}"
        )


class Terminated(BaseException):  # noqa: N818 - named like KeyboardInterrupt, which it parallels
    """SIGTERM arrived before the training loop took over the signal (while data or the model was being built)."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


class TerminateAsException:
    """Within the block, SIGTERM raises `Terminated` (as SIGINT raises KeyboardInterrupt) so that the CLI can
    say what happened instead of the process vanishing; the loop's StopFlag overrides it while it runs."""

    def __enter__(self) -> TerminateAsException:
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, _raise_terminated)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class StopFlag:
    """The first SIGINT or SIGTERM asks the loop to checkpoint and stop at the next step boundary; a second one
    gets the handler that was there before (Ctrl-C: KeyboardInterrupt; SIGTERM: the process ends)."""

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():  # Python sets handlers in the main thread only
            self._previous = {signum: signal.signal(signum, self._handle) for signum in STOP_SIGNALS}
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.signum = self.signum or signum
        previous = self._previous.get(signum)
        fallback = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        signal.signal(signum, previous if previous is not None else fallback)

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            if previous is not None:
                signal.signal(signum, previous)
