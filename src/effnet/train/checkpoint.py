"""Atomic, resumable checkpoints (tensors and plain containers only, so they load with weights_only=True)."""

from __future__ import annotations

import io
import os
import random
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from effnet._util.fileio import atomic_write
from effnet.weights.reader import CHECKPOINT_FORMAT, CorruptCheckpoint, content_checksum, read_file

__all__ = ["CHECKPOINT_FORMAT", "CheckpointManager", "CorruptCheckpoint", "atomic_save", "capture_rng",
           "content_checksum", "load_checkpoint", "restore_rng"]
_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


def atomic_save(obj: Any, path: Path) -> Path:
    """torch.save to a temp file in the same folder, fsync, then os.replace: a crash never leaves half a file."""
    # Serialised in memory first: torch's own file writer reports a full disk as "unexpected pos", a plain
    # write raises OSError(ENOSPC), which the CLI reports as "disk full".
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getbuffer()))


def _atomic_copy(source: Path, target: Path) -> None:
    """Make `target` a copy of `source` atomically (a hard link when the filesystem allows: no extra bytes)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The whole training state of an `effnet train` checkpoint, read and checksum-verified by the one reader
    (`effnet.weights.read_file`; CorruptCheckpoint if the file is damaged)."""
    file = read_file(path)
    if file.checkpoint is None:
        raise ValueError(f"{path} is not an effnet training checkpoint (written by `effnet train`)")
    return file.checkpoint


class CheckpointManager:
    """Writes checkpoints/step-N.pt, keeps the last `keep_last`, and maintains last.pt and best.pt."""

    def __init__(self, run_dir: Path, keep_last: int = 2) -> None:
        self.folder = Path(run_dir) / "checkpoints"
        self.keep_last = keep_last

    @property
    def last(self) -> Path:
        """The most recent checkpoint (what --resume loads)."""
        return self.folder / "last.pt"

    @property
    def best(self) -> Path:
        """The checkpoint with the best validation accuracy."""
        return self.folder / "best.pt"

    def save(self, state: dict[str, Any], global_step: int, *, is_best: bool = False) -> Path:
        """Write a checksummed checkpoint for `global_step`, point last.pt (and best.pt) at it, prune old ones."""
        state = {"format": CHECKPOINT_FORMAT, **state}
        state["checksum"] = content_checksum(state)
        path = atomic_save(state, self.folder / f"step-{global_step:08d}.pt")
        _atomic_copy(path, self.last)
        if is_best:
            _atomic_copy(path, self.best)
        for old in self.step_files()[self.keep_last :]:
            old.unlink()
        return path

    def step_files(self) -> list[Path]:
        """checkpoints/step-N.pt, newest (highest N) first."""
        if not self.folder.is_dir():
            return []
        found = [p for p in self.folder.iterdir() if _STEP_FILE.match(p.name)]
        return sorted(found, key=lambda p: int(_STEP_FILE.match(p.name).group(1)), reverse=True)  # type: ignore[union-attr]

    def newest_intact(self) -> tuple[Path, dict[str, Any], list[str]] | None:
        """The intact checkpoint furthest into the run (last.pt or a step file), or None if there is none.

        Also returns a note per damaged file; damaged files newer than the chosen one are renamed *.corrupt so
        that pruning never keeps them in place of intact ones.
        """
        notes: list[str] = []
        best: tuple[Path, dict[str, Any]] | None = None
        for path in self._candidates():
            try:
                state = load_checkpoint(path)
            except CorruptCheckpoint as err:
                notes.append(str(err))
                if path != self.last:
                    path.replace(path.with_name(path.name + ".corrupt"))
                continue
            if best is None or int(state["global_step"]) > int(best[1]["global_step"]):
                best = (path, state)
            if path != self.last:  # step files come newest first: no older one can be further along
                break
        return (best[0], best[1], notes) if best else None

    def _candidates(self) -> Iterator[Path]:
        if self.last.is_file():
            yield self.last
        yield from self.step_files()


def capture_rng() -> dict[str, Any]:
    """Every random generator a training step touches (torch CPU/CUDA, numpy, python), as plain data."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng`."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
