"""A run folder owned by one writer: an fcntl lock while a run writes it, no silent overwrite, no stale temp files."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from effnet._util.fileio import LockHeld, lock_exclusively

LOCK_NAME = ".lock"
# What `effnet train` writes into a run folder: what --overwrite removes, and what says "a run lives here".
RUN_FILES = ("checkpoints", "metrics.jsonl", "train.log", "tensorboard", "curves.png", "config.yaml", "spec.json")


class RunFolderLock:
    """An exclusive, non-blocking fcntl lock on <run dir>/.lock, held for the life of a run (released by the OS
    when the process dies, so a killed run never leaves the folder locked)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunFolderLock:
        """Take the lock or raise ValueError naming the process that holds it."""
        try:
            self._fd = lock_exclusively(self.path)
        except LockHeld as held:
            raise ValueError(
                f"run folder {self.path.parent} is in use by another `effnet train` (pid "
                f"{held.holder or 'another process'}); wait for it to finish or choose another --run-name"
            ) from None
        return self

    def release(self) -> None:
        """Give the lock back (idempotent)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def holds_a_run(run_dir: Path) -> bool:
    """Whether `run_dir` already holds files of an `effnet train` run."""
    return any((Path(run_dir) / name).exists() for name in ("config.yaml", "checkpoints", "metrics.jsonl"))


def clear_run_files(run_dir: Path) -> None:
    """Remove what a previous run wrote (for --overwrite); other files in the folder are left alone."""
    for name in RUN_FILES:
        path = Path(run_dir) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """Delete half-written `.*.tmp*` files that killed writes left behind (only call with the lock held)."""
    removed = []
    for folder in (Path(run_dir), Path(run_dir) / "checkpoints"):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name.startswith(".") and ".tmp" in path.name and path.is_file():
                path.unlink()
                removed.append(path)
    return removed


def open_run_folder(path: Path, *, named: bool, resume: bool, overwrite: bool) -> tuple[RunFolderLock, list[str]]:
    """Create and lock a run folder; refuse to write into a finished run unless resuming or overwriting.

    Returns the held lock and notes for the run's log.
    """
    path.mkdir(parents=True, exist_ok=True)
    lock = RunFolderLock(path).acquire()
    notes: list[str] = []
    try:
        if named and not resume and holds_a_run(path):
            if not overwrite:
                raise ValueError(
                    f"{path} already holds a run; continue it with --resume, replace it with --overwrite, "
                    "or choose another --run-name"
                )
            clear_run_files(path)
            notes.append(f"--overwrite: removed the previous run's files from {path}")
        stale = remove_stale_temp_files(path)
        if stale:
            notes.append(f"removed {len(stale)} half-written temp file(s) left by an interrupted run")
        (path / "checkpoints").mkdir(exist_ok=True)
    except BaseException:
        lock.release()
        raise
    return lock, notes
