"""What a run shows and records while it trains: console lines, the live bar, train.log, metrics and TensorBoard."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from effnet._util.console import show_bar
from effnet.train.metrics import RunLogger


class ProgressReporter:
    """Console output (rank 0, when progress is on) and the run folder's logs (rank 0); no training state."""

    def __init__(self, *, epochs: int, steps_per_epoch: int, global_batch: int, is_main: bool, show_progress: bool,
                 logger: RunLogger | None) -> None:
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.global_batch = global_batch
        self.show = show_progress and is_main
        self.bar = True  # the live bar too (drawn only on a terminal); False keeps just the lines
        self.logger = logger

    def log(self, message: str) -> None:
        """A line for the console and train.log."""
        if self.show:
            tqdm.write(message)
        if self.logger is not None:
            self.logger.log_line(message)

    def logged_text(self) -> str:
        """What train.log holds so far ("" without a run folder)."""
        path = self.logger.run_dir / "train.log" if self.logger is not None else None
        return path.read_text(errors="replace") if path is not None and path.is_file() else ""

    def progress_bar(self, epoch: int, initial: int) -> tqdm:
        """The live bar of one epoch."""
        return tqdm(total=self.steps_per_epoch, initial=initial, desc=f"epoch {epoch + 1}/{self.epochs}",
                    disable=not (self.show and show_bar(self.bar)), dynamic_ncols=True, leave=False)

    def update_bar(self, bar: tqdm, running: list[float], lr: float, rate: float, global_step: int) -> None:
        """Loss, accuracy, lr, images/s and the run's remaining time."""
        if bar.disable:
            bar.update(1)
            return
        total_steps = self.steps_per_epoch * self.epochs
        per_step = self.global_batch / max(rate, 1e-9)
        eta = time.strftime("%H:%M:%S", time.gmtime(per_step * (total_steps - global_step)))
        bar.set_postfix_str(f"loss {running[0] / max(1, running[2]):.3f} acc {running[1] / max(1, running[2]):.3f} "
                            f"lr {lr:.2e} {rate:.0f} img/s eta {eta}", refresh=False)
        bar.update(1)

    def describe_row(self, row: dict[str, Any]) -> str:
        """One summary line per epoch."""
        text = (f"epoch {row['epoch']}/{self.epochs}: train loss {row['train_loss']:.4f} "
                f"acc {row['train_acc']:.4f}")
        if "val_acc" in row:
            text += f" | val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f} top5 {row['val_acc5']:.4f}"
        if "ema_val_acc" in row:
            text += f" | EMA val acc {row['ema_val_acc']:.4f}"
        return text + f" | lr {row['lr']:.3g} | {row['img_per_s']:.0f} img/s"

    def step(self, global_step: int, loss: float, lr: float) -> None:
        """TensorBoard scalars of a training step (every 10th)."""
        if self.logger is not None and global_step % 10 == 0:
            self.logger.scalars(global_step, {"train/loss": loss, "train/lr": lr})

    def epoch_end(self, history: list[dict[str, Any]]) -> None:
        """metrics.jsonl, TensorBoard and the curves after an epoch."""
        if self.logger is not None:
            self.logger.epoch_end(history)

    def resumed_at(self, global_step: int) -> None:
        """Drop TensorBoard events a killed run wrote after the checkpoint it resumes from."""
        if self.logger is not None:
            self.logger.purge_after(global_step)

    @property
    def run_dir(self) -> Path | None:
        """The run folder the logs go to (None on other ranks)."""
        return self.logger.run_dir if self.logger is not None else None

    def close(self) -> None:
        """Flush and close the logs."""
        if self.logger is not None:
            self.logger.close()
