"""What a run writes besides checkpoints: metrics.jsonl, TensorBoard events, a PNG of the curves, a log file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from effnet._util.fileio import atomic_write, write_text_atomic


class RunLogger:
    """Rank-0 writer of a run folder's metrics (JSON lines, TensorBoard) and its curves plot."""

    def __init__(self, run_dir: Path, *, tensorboard: bool, plot: bool, purge_step: int | None = None) -> None:
        self.run_dir = run_dir
        self.plot_enabled = plot
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a killed run wrote after its last checkpoint.
            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge_step)

    def purge_after(self, step: int) -> None:
        """Reopen TensorBoard so that events a killed run wrote after `step` are dropped (on resume)."""
        if self.writer is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer.close()
            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """TensorBoard scalars at a global step."""
        if self.writer is not None:
            for key, value in values.items():
                if value is not None:
                    self.writer.add_scalar(key, value, step)

    def log_line(self, message: str) -> None:
        """Append a line to train.log."""
        with open(self.run_dir / "train.log", "a") as stream:
            stream.write(message + "\n")

    def epoch_end(self, history: list[dict[str, Any]]) -> None:
        """Rewrite metrics.jsonl from the history (so a resumed run's file has no stale rows) and the plot."""
        write_text_atomic(self.run_dir / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
        row = history[-1]
        self.scalars(row["global_step"], {
            f"epoch/{key}": value for key, value in row.items()
            if isinstance(value, (int, float)) and key not in ("epoch", "global_step")
        })
        if self.writer is not None:
            self.writer.flush()
        if self.plot_enabled:
            plot_curves(history, self.run_dir / "curves.png")

    def close(self) -> None:
        """Flush and close TensorBoard."""
        if self.writer is not None:
            self.writer.close()


def plot_curves(history: list[dict[str, Any]], path: Path) -> Path:
    """Loss, accuracy and learning rate per epoch, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]

    def series(key: str) -> tuple[list[int], list[float]]:
        points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
        return [p[0] for p in points], [p[1] for p in points]

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key, label in (("train_loss", "train"), ("val_loss", "val"), ("ema_val_loss", "val (EMA)")):
        axes[0].plot(*series(key), marker="o", label=label)
    for key, label in (("train_acc", "train"), ("val_acc", "val"), ("ema_val_acc", "val (EMA)")):
        axes[1].plot(*series(key), marker="o", label=label)
    axes[2].plot(epochs, [row["lr"] for row in history], marker="o")
    for axis, title in zip(axes, ("loss", "top-1 accuracy", "learning rate (end of epoch)"), strict=True):
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    finally:
        plt.close(fig)
    return path
