"""Atomic, resumable checkpoints: one schema (`Checkpoint`), written and read by the `CheckpointManager` (tensors
and plain containers only, so they load with weights_only=True)."""

from __future__ import annotations

import io
import os
import random
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from effnet._util.fileio import atomic_write
from effnet.models.specs import NetSpec
from effnet.preprocess import Preprocess
from effnet.train.distributed import DistInfo
from effnet.weights.reader import CHECKPOINT_FORMAT, CorruptCheckpoint, WeightFile, content_checksum, read_file

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "CheckpointManager",
    "CorruptCheckpoint",
    "atomic_save",
    "capture_rng",
    "collect_rng",
    "content_checksum",
    "load_checkpoint",
    "restore_rank_rng",
    "restore_rng",
]
_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """One `effnet train` checkpoint. The file is `to_dict()` plus a checksum (CheckpointManager.save); it reads
    back through the one reader (`effnet.weights.read_file`, which checks the model's part) into `from_file`."""

    # The model: enough to rebuild and load it anywhere (effnet.weights.load_model, predict, export, serve).
    spec: NetSpec
    num_classes: int
    class_names: tuple[str, ...] | None
    preprocess: Preprocess | None  # the run's eval preprocessing
    model: dict[str, torch.Tensor]  # the raw (non-EMA) weights
    ema: dict[str, Any] | None  # ModelEma.state_dict(): {"module": weights, "num_updates": n, "decay": d}
    # The run it belongs to: what --resume checks before continuing.
    config: dict[str, Any] | None  # TrainConfig.to_dict()
    steps_per_epoch: int | None = None
    fast_settings: dict[str, Any] | None = None  # what the config's `auto` options became (FastSettings.to_dict)
    # Where the run stood: what --resume restores.
    optimizer: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None  # fp16's GradScaler
    epoch: int = 0  # epochs finished
    step_in_epoch: int = 0  # steps into the next epoch
    global_step: int = 0
    running: tuple[float, ...] = (0.0, 0.0, 0.0)  # loss sum, correct, images of the epoch so far (all processes)
    history: tuple[dict[str, Any], ...] = ()  # one row per finished epoch (metrics.jsonl)
    best_val_acc: float = -1.0
    rng: tuple[dict[str, Any], ...] = ()  # every process's generator states, rank order (capture_rng)

    def to_dict(self) -> dict[str, Any]:
        """What the file holds: plain containers and contiguous tensors, as any run or tool reads them."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config,
            "spec": self.spec.to_dict(),
            "num_classes": self.num_classes,
            "class_names": list(self.class_names) if self.class_names is not None else None,
            "preprocess": self.preprocess.to_dict() if self.preprocess is not None else None,
            "steps_per_epoch": self.steps_per_epoch,
            "fast_settings": self.fast_settings,
            "model": _contiguous(self.model),
            "ema": _contiguous(self.ema),
            "optimizer": _contiguous(self.optimizer),
            "scaler": self.scaler,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "running": list(self.running),
            "history": list(self.history),
            "best_val_acc": self.best_val_acc,
            "rng": list(self.rng),
        }

    @classmethod
    def from_file(cls, file: WeightFile) -> Checkpoint:
        """The record of a checkpoint `read_file` read: its model part as the reader checked it, the rest as saved."""
        state = file.checkpoint
        if state is None:
            raise ValueError(f"{file.path} is not an effnet training checkpoint (written by `effnet train`)")
        assert file.spec is not None  # the reader requires it of a checkpoint
        return cls(
            spec=file.spec,
            num_classes=file.num_classes,
            class_names=file.class_names,
            preprocess=file.preprocess,
            model=file.tensors,
            ema=state.get("ema"),
            config=file.config,
            steps_per_epoch=state.get("steps_per_epoch"),
            fast_settings=state.get("fast_settings"),
            optimizer=state.get("optimizer"),
            scaler=state.get("scaler"),
            epoch=int(state.get("epoch", 0)),
            step_in_epoch=int(state.get("step_in_epoch", 0)),
            global_step=int(state.get("global_step", 0)),
            running=tuple(state.get("running") or (0.0, 0.0, 0.0)),
            history=tuple(state.get("history") or ()),
            best_val_acc=float(state.get("best_val_acc", -1.0)),
            rng=tuple(state.get("rng") or ()),
        )

    @classmethod
    def read(cls, path: str | Path) -> Checkpoint:
        """Read and checksum-verify a checkpoint file (CorruptCheckpoint if it is damaged)."""
        return cls.from_file(read_file(path))


def _contiguous(value: Any) -> Any:
    """`value` with every tensor in its plain (contiguous) memory layout (a channels_last run's weights too)."""
    if isinstance(value, torch.Tensor):
        return value.contiguous()
    if isinstance(value, dict):
        return {key: _contiguous(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_contiguous(item) for item in value)
    return value


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
    """An `effnet train` checkpoint file as stored (`Checkpoint.to_dict()` and its checksum), read and
    checksum-verified by the one reader (CorruptCheckpoint if it is damaged); `Checkpoint.read` gives the record."""
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

    def save(self, checkpoint: Checkpoint, *, is_best: bool = False) -> Path:
        """Write a checksummed step file for the checkpoint, point last.pt (and best.pt) at it, prune old ones."""
        state = checkpoint.to_dict()
        state["checksum"] = content_checksum(state)
        path = atomic_save(state, self.folder / f"step-{checkpoint.global_step:08d}.pt")
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

    def newest_intact(self) -> tuple[Path, Checkpoint, list[str]] | None:
        """The intact checkpoint furthest into the run (last.pt or a step file), or None if there is none.

        Also returns a note per damaged file; damaged files newer than the chosen one are renamed *.corrupt so
        that pruning never keeps them in place of intact ones, and a damaged last.pt is rewritten from the chosen
        file (a run that resumes only to find itself finished saves nothing, and last.pt must still load).
        """
        notes: list[str] = []
        best: tuple[Path, Checkpoint] | None = None
        last_note = None  # the index of last.pt's note when it is damaged
        for path in self._candidates():
            try:
                checkpoint = Checkpoint.read(path)
            except CorruptCheckpoint as err:
                if path == self.last:
                    last_note = len(notes)
                notes.append(str(err))
                if path != self.last:
                    path.replace(path.with_name(path.name + ".corrupt"))
                continue
            if best is None or checkpoint.global_step > best[1].global_step:
                best = (path, checkpoint)
            if path != self.last:  # step files come newest first: no older one can be further along
                break
        if best and last_note is not None:
            _atomic_copy(best[0], self.last)
            notes[last_note] += f"; rewrote it from {best[0].name}"
        return (best[0], best[1], notes) if best else None

    def _candidates(self) -> Iterator[Path]:
        if self.last.is_file():
            yield self.last
        yield from self.step_files()


def collect_rng(info: DistInfo) -> list[dict[str, Any]]:
    """Every process's generator states (rank order), so a resumed DDP run draws the same dropout masks."""
    state = capture_rng()
    if not info.enabled:
        return [state]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, state)
    return gathered


def restore_rank_rng(states: list[dict[str, Any]], info: DistInfo) -> None:
    """Restore this process's entry of `collect_rng`'s list."""
    if len(states) != info.world_size:
        raise ValueError(
            f"the checkpoint was written by {len(states)} process(es) but this run has "
            f"{info.world_size}; resume with the same --nproc_per_node"
        )
    restore_rng(states[info.rank])


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
