"""An append-only JSON-lines journal of finished trials, so an interrupted search resumes where it stopped."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from effnet._util.filecheck import check_depth
from effnet._util.fileio import LockHeld, lock_exclusively, prepare_folder


class Journal:
    """One line per event: a header naming the search (its fingerprint), then one line per finished trial.

    Each line is flushed and fsync'ed before the trial counts as done, so a kill at any moment loses at most the
    trials still running; a half-written last line (killed mid-write) is ignored on reading.
    """

    def __init__(self, path: str | Path, fingerprint: str, *, restart: bool = False) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if restart and self.path.exists():
            self.path.unlink()
        entries = self._lines()
        if not entries:
            self._append({"kind": "header", "fingerprint": fingerprint})
        elif entries[0].get("kind") != "header":
            raise ValueError(
                f"{self.path} does not start with an effnet search header (written by something else, or "
                "rewritten while a search was running); pass --restart to discard it or use another --out"
            )
        elif {e.get("fingerprint") for e in entries if e.get("kind") == "header"} != {fingerprint}:
            raise ValueError(
                f"{self.path} belongs to a different search (other base, budget, data or seed); write to another "
                "--out directory, or pass --restart to discard its finished trials"
            )

    def _lines(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        entries = []
        for line in self.path.read_bytes().splitlines():
            try:  # json.loads decodes UTF-8 itself: a damaged line is a ValueError like a line cut short
                entry = check_depth(json.loads(line), "a line", self.path)
            except (ValueError, RecursionError):
                continue  # cut short by a kill, not UTF-8, or written by hand nested deeper than any record
            if isinstance(entry, dict):
                entries.append(entry)
        return entries

    def _append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, sort_keys=True)
        with open(self.path, "a+b") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")  # end a line a kill cut short, so this record starts clean
            handle.write(line.encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def record(self, entry: dict[str, Any]) -> None:
        """Append one finished trial (must carry `trial_id` and `status`)."""
        assert "trial_id" in entry and "status" in entry, entry
        self._append({"kind": "trial", **entry})

    def finished(self) -> dict[str, dict[str, Any]]:
        """The latest record of every finished trial, keyed by trial id."""
        done: dict[str, dict[str, Any]] = {}
        for entry in self._lines():
            if entry.get("kind") == "trial" and _well_formed(entry):
                done[entry["trial_id"]] = {k: v for k, v in entry.items() if k != "kind"}
        return done


class OutFolderLock:
    """An exclusive fcntl lock on <out>/.lock while a search or study writes the folder: a second one into the same
    --out is refused instead of training the same trials twice. The OS drops the lock when its process dies, so a
    killed search never leaves the folder locked (the stale file is taken over); the file is removed on release."""

    def __init__(self, out: str | Path, command: str = "search") -> None:
        self.path = Path(out) / ".lock"
        self.command = command
        self._fd: int | None = None

    def __enter__(self) -> OutFolderLock:
        prepare_folder(self.path.parent, "--out")
        try:
            self._fd = lock_exclusively(self.path)
        except LockHeld as held:
            raise ValueError(
                f"{self.path.parent} is in use by another `effnet {self.command}` (pid {held.holder or '?'}); wait "
                "for it to finish (rerunning then resumes its trials) or pass another --out"
            ) from None
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # while still locked, so no one can lock the file being removed
            os.close(self._fd)  # closing the last descriptor releases the lock
            self._fd = None


def _well_formed(entry: dict[str, Any]) -> bool:
    # A record with missing or mistyped fields (edited by hand, another tool) counts as not finished: the trial
    # runs again rather than the search failing on it later.
    return (
        isinstance(entry.get("trial_id"), str)
        and entry.get("status") in ("ok", "failed")
        and isinstance(entry.get("metrics", {}), dict)
    )
