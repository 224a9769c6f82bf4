"""Atomic, resumable checkpoints (tensors and plain containers only, so they load with weights_only=True)."""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from effnet.fileio import atomic_write

CHECKPOINT_FORMAT = "effnet-train-checkpoint-v1"
_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


def atomic_save(obj: Any, path: Path) -> Path:
    """torch.save to a temp file in the same folder, fsync, then os.replace: a crash never leaves half a file."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


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
    """Read a training checkpoint without executing code."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an effnet training checkpoint (written by `effnet train`)")
    return state


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
        """Write a checkpoint for `global_step`, point last.pt (and best.pt) at it, prune old ones."""
        path = atomic_save({"format": CHECKPOINT_FORMAT, **state}, self.folder / f"step-{global_step:08d}.pt")
        _atomic_copy(path, self.last)
        if is_best:
            _atomic_copy(path, self.best)
        steps = sorted(p for p in self.folder.iterdir() if _STEP_FILE.match(p.name))
        for old in steps[: -self.keep_last]:
            old.unlink()
        return path


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
