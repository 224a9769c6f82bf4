"""Choosing the checkpoint a resumed run continues from, and refusing one that belongs to a different run."""

from __future__ import annotations

from pathlib import Path

from effnet.models.specs import NetSpec
from effnet.train.checkpoint import Checkpoint, CheckpointManager
from effnet.train.config import TrainConfig
from effnet.train.distributed import DistInfo, broadcast_object


def find_resume_checkpoint(run_dir: Path, keep_last: int, info: DistInfo) -> tuple[Checkpoint | None, list[str]]:
    """The state of the newest intact checkpoint in `run_dir` (None if there is none) and notes for the log.

    Rank 0 chooses (and sets damaged files aside); the other ranks load the file it chose.
    """
    notes: list[str] = []
    chosen: str | None = None
    state: Checkpoint | None = None
    if info.is_main:
        found = CheckpointManager(run_dir, keep_last).newest_intact()
        if found is not None:
            path, state, damaged = found
            chosen = str(path)
            notes += [f"resume: skipped {text}" for text in damaged]
        elif (run_dir / "checkpoints" / "last.pt").exists() or any((run_dir / "checkpoints").glob("step-*")):
            raise ValueError(
                f"every checkpoint in {run_dir / 'checkpoints'} is damaged; nothing to resume from. "
                "Start again with --overwrite"
            )
    chosen = broadcast_object(chosen, info)  # type: ignore[assignment]
    if chosen is not None and state is None:
        state = Checkpoint.read(chosen)
    if chosen is not None:
        notes.append(f"resume: continuing from {chosen}")
    return state, notes


def check_resumable(
    state: Checkpoint, config: TrainConfig, spec: NetSpec, num_classes: int, steps_per_epoch: int
) -> None:
    """Raise ValueError (with the reason and the fix) if `state` cannot continue as the run `config` describes."""
    saved_spec = state.spec.to_dict()
    if saved_spec != spec.to_dict():
        differ = sorted(
            key for key in set(saved_spec) | set(spec.to_dict()) if saved_spec.get(key) != spec.to_dict().get(key)
        )
        raise ValueError(
            f"cannot resume: the checkpoint holds a {saved_spec.get('name', '?')} model but this run builds "
            f"{spec.name} (differs in: {', '.join(differ)}); resume with the run's own --model/--width/--depth "
            "(see its config.yaml), or start a new run with --weights to fine-tune from it"
        )
    if state.num_classes != num_classes:
        raise ValueError(
            f"cannot resume: the run was trained on {state.num_classes} classes but this data has "
            f"{num_classes}; resume with the run's own data options (see its config.yaml)"
        )
    saved_batch = (state.config or {}).get("batch_size")
    if saved_batch is not None and int(saved_batch) != config.batch_size:
        raise ValueError(
            f"cannot resume: the run was trained with batch_size {saved_batch} but this resume asks for "
            f"{config.batch_size}, which would shift its position within the epoch; resume with --batch-size "
            f"{saved_batch}, or start a new run with --weights"
        )
    saved_steps = state.steps_per_epoch
    if saved_steps is not None and int(saved_steps) != steps_per_epoch:
        raise ValueError(
            f"cannot resume: the run had {saved_steps} steps per epoch but this data gives {steps_per_epoch}; "
            "resume with the run's own data options (see its config.yaml)"
        )
