"""`fit`: the training loop (recipe, progressive learning, EMA, checkpoints, resume, DDP) and its result."""

from __future__ import annotations

import math
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from effnet.models.specs import NetSpec
from effnet.train.checkpoint import Checkpoint, CheckpointManager, collect_rng, restore_rank_rng
from effnet.train.config import TrainConfig
from effnet.train.distributed import DistInfo, all_reduce_sum, cleanup, init_distributed
from effnet.train.evaluate import autocast_context, resolve_device
from effnet.train.freezing import apply_train_mode, set_backbone_frozen
from effnet.train.progressive import ProgressiveStage
from effnet.train.sampling import EpochKeyed, EpochTagged, ResumableSampler, SeededDataset
from effnet.train.setup import RunSetup, build_run
from effnet.train.signals import StopFlag, TrainingInterrupted


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite; only checkpoints with finite weights were kept."""


@dataclass(frozen=True)
class TrainResult:
    """What a finished run reached. Accuracies are top-1 in [0, 1] of the raw (non-EMA) model."""

    run_dir: Path
    epochs: int
    best_val_acc: float
    final_val_acc: float
    final_val_loss: float
    best_ema_val_acc: float | None
    final_ema_val_acc: float | None
    history: list[dict[str, Any]]
    num_params: int
    train_seconds: float
    best_checkpoint: Path | None


def fit(config: TrainConfig, *, spec: NetSpec | None = None, progress: bool = True,
        overwrite: bool = False, bar: bool = True) -> TrainResult:
    """Train as `config` says (spec overrides config.model); returns the result, files are in result.run_dir.

    A run_name whose folder already holds a run is refused unless `config.resume` (continue it) or `overwrite`
    (replace it). `progress` prints the run's lines, `bar` also a live bar (on a terminal only). Raises
    TrainingInterrupted on Ctrl-C and TrainingDiverged on a NaN/inf loss or weights.
    """
    device = resolve_device(config.device)
    info = init_distributed(device)
    if device.type == "cuda" and info.enabled:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    try:
        return _Trainer(build_run(config, spec, device, info, progress, overwrite, bar)).run()
    finally:
        cleanup(info)


def soft_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against probability targets (mixup/cutmix with label smoothing folded in)."""
    return -(soft_targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


class _Trainer:
    """Holds the state of one run; `run` drives epochs, steps, evaluation and checkpoints."""

    def __init__(self, run: RunSetup) -> None:
        self.run_setup = run
        self.cfg: TrainConfig = run.config
        self.info: DistInfo = run.info
        self.device = run.device
        self.model = run.model
        self.ema = run.ema
        self.optimizer = run.optimizer
        self.scaler = run.scaler
        self.schedule = run.schedule
        self.report = run.reporter
        self.fast = run.fast
        self._loader: tuple[ProgressiveStage | None, DataLoader] | None = None  # kept per stage (persistent workers)
        self.log = run.reporter.log
        self.checkpoints = CheckpointManager(run.run_dir, self.cfg.keep_last) if run.run_dir else None
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.running = [0.0, 0.0, 0.0]  # loss sum, correct, images (this process; rank 0 may hold carried sums)
        self.history: list[dict[str, Any]] = []
        self.best_val_acc = -1.0
        self.train_model: nn.Module = self.model
        self.stage: ProgressiveStage | None = None
        self.mixer: Any = None
        self.seeded = SeededDataset(run.data.train, self.cfg.seed)
        self.sampler = ResumableSampler(self.seeded, num_replicas=self.info.world_size, rank=self.info.rank,
                                        seed=self.cfg.seed)

    # ------------------------------------------------------------------------------------------- driving
    def run(self) -> TrainResult:
        started = time.time()
        self._maybe_resume()
        frozen = None
        with StopFlag() as stop:
            self.stop = stop
            try:
                while self.epoch < self.cfg.epochs:
                    want_frozen = self.epoch < self.cfg.freeze_epochs
                    if want_frozen != frozen:
                        frozen = want_frozen
                        set_backbone_frozen(self.model, frozen, self.cfg.frozen_stages)
                        self._wrap_model()
                        if frozen or self.cfg.freeze_epochs:
                            self.log(f"backbone {'frozen' if frozen else 'unfrozen'} from epoch {self.epoch + 1}")
                    self._train_epoch()
            finally:
                self.report.close()
                if self.run_setup.lock is not None:
                    self.run_setup.lock.release()
        return self._result(time.time() - started)

    def _maybe_resume(self) -> None:
        state, self.run_setup.resume_state = self.run_setup.resume_state, None
        if state is None:
            if self.cfg.resume:
                self.log("resume: no checkpoint yet in this run folder, starting from scratch")
            return
        self.model.load_state_dict(state.model)
        if self.ema is not None and state.ema:
            self.ema.load_state_dict(state.ema)
        self.optimizer.load_state_dict(state.optimizer)
        if self.scaler is not None and state.scaler:
            self.scaler.load_state_dict(state.scaler)
        self.epoch, self.step_in_epoch, self.global_step = state.epoch, state.step_in_epoch, state.global_step
        self.history, self.best_val_acc = list(state.history), state.best_val_acc
        # The carried partial-epoch sums are global; only rank 0 adds them back.
        self.running = list(state.running) if self.info.is_main else [0.0, 0.0, 0.0]
        restore_rank_rng(list(state.rng), self.info)
        self.report.resumed_at(self.global_step)
        self.log(f"resumed at epoch {self.epoch + 1}, step {self.step_in_epoch}")
        self._catch_up_logs()

    def _catch_up_logs(self) -> None:
        """Write the epoch lines and metrics a killed run checkpointed but did not get to log."""
        if self.report.logger is None or not self.history:
            return
        written = self.report.logged_text()
        for row in self.history:
            if not re.search(rf"^epoch {row['epoch']}/\d+: train loss", written, flags=re.MULTILINE):
                self.log(self.report.describe_row(row))
        if self.step_in_epoch == 0:  # the last epoch's row may exist only in the checkpoint
            self.report.epoch_end(self.history)

    def _wrap_model(self) -> None:
        model: nn.Module = self.model
        if self.info.enabled:
            # Rebuilt when the backbone is (un)frozen: DDP fixes the set of parameters it syncs at construction.
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.fast.compile:
            model = torch.compile(model)
        self.train_model = model

    # ------------------------------------------------------------------------------------------- an epoch
    def _enter_stage(self) -> None:
        stage = self.run_setup.stage_at(self.epoch)
        if stage == self.stage:
            return
        self.stage = stage
        self.run_setup.data.train.transform = self.run_setup.train_transform(stage)
        self.model.dropout.p = stage.dropout
        self.mixer = self.run_setup.mixer(stage)
        self.to_device = self.run_setup.to_device(stage)
        if self.cfg.progressive:
            self.log("progressive " + stage.describe())

    def _train_epoch(self) -> None:
        self._enter_stage()
        cfg, setup = self.cfg, self.run_setup
        self.seeded.epoch = self.epoch
        self.sampler.set_position(self.epoch, self.step_in_epoch * setup.batch_per_rank)
        loader = self._epoch_loader()
        apply_train_mode(self.model)
        bar = self.report.progress_bar(self.epoch, self.step_in_epoch)
        tick, images_seen = time.time(), 0
        lr = self.schedule(self.global_step)
        for images, targets in loader:
            lr = self.schedule(self.global_step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss, correct = self._train_step(images, targets)
            n = targets.numel()
            self.running[0] += loss * n
            self.running[1] += correct
            self.running[2] += n
            images_seen += n
            self.global_step += 1
            self.step_in_epoch += 1
            rate = images_seen * self.info.world_size / max(1e-9, time.time() - tick)
            self.report.update_bar(bar, self.running, lr, rate, self.global_step)
            self.report.step(self.global_step, loss, lr)
            if self._should_stop():
                self._save(is_best=False)
                bar.close()
                self.log(f"interrupted: checkpoint saved to {self.checkpoints.last if self.checkpoints else '-'}; "
                         "continue with --resume")
                raise TrainingInterrupted(self.run_setup.run_dir, self.stop.signum or signal.SIGINT, self.global_step)
            every = cfg.checkpoint_every_steps
            if every and self.global_step % every == 0 and self.step_in_epoch < setup.steps_per_epoch:
                self._save(is_best=False)
        bar.close()
        epoch_time = time.time() - tick
        self._end_epoch(images_seen * self.info.world_size / max(1e-9, epoch_time), epoch_time, lr)

    def _epoch_loader(self) -> DataLoader:
        """The training loader, built once per progressive stage: persistent workers keep a copy of the dataset
        (and its transform) from when they started, so a new stage needs new workers, a new epoch does not (the
        epoch travels with each index, see `EpochKeyed`)."""
        if self._loader is not None and self._loader[0] == self.stage:
            return self._loader[1]
        fast, gpu_input = self.fast, self.run_setup.gpu_input
        self._loader = None  # the old stage's workers end with their loader
        loader = DataLoader(EpochKeyed(self.seeded), batch_size=self.run_setup.batch_per_rank,
                            sampler=EpochTagged(self.sampler), num_workers=fast.num_workers, drop_last=True,
                            generator=torch.Generator(), pin_memory=fast.pin_memory,
                            persistent_workers=fast.persistent_workers, prefetch_factor=fast.prefetch_factor,
                            collate_fn=gpu_input.collate if gpu_input else None)
        self._loader = (self.stage, loader)
        return loader

    def _train_step(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
        images, targets = self.to_device(images, targets, (self.epoch, self.step_in_epoch))
        if self.fast.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        soft = None
        if self.mixer.active:
            images, soft = self.mixer(images, targets)
        # Only the forward runs in bf16/fp16; the loss (below), BN statistics, optimizer, EMA stay fp32.
        with autocast_context(self.device, self.fast.amp):
            logits = self.train_model(images)
        logits = logits.float()
        if soft is not None:
            loss = soft_cross_entropy(logits, soft)
        else:
            loss = F.cross_entropy(logits, targets, label_smoothing=self.cfg.label_smoothing)
        self._check_finite(loss)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            self._clip()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self._clip()
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        correct = (logits.detach().argmax(dim=1) == targets).sum().item()
        return loss.item(), float(correct)

    def _clip(self) -> None:
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)

    def _check_finite(self, loss: torch.Tensor) -> None:
        bad = 0.0 if torch.isfinite(loss).item() else 1.0
        bad = all_reduce_sum([bad], self.device, self.info)[0]  # every rank stops together
        if bad:
            raise self._diverged(f"loss became {loss.item()} at epoch {self.epoch + 1}, step "
                                 f"{self.step_in_epoch + 1} (global step {self.global_step})")

    def _diverged(self, what: str) -> TrainingDiverged:
        # Checkpoints are only written with finite weights, so last.pt is the last good one.
        last = self.checkpoints.last if self.checkpoints and self.checkpoints.last.is_file() else None
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint had been written yet"
        return TrainingDiverged(
            f"{what}; stopped, {kept}. Lower the learning rate "
            f"(now {self.optimizer.param_groups[0]['lr']:.3g}), add warm-up or grad_clip, or turn amp off."
        )

    def _check_finite_weights(self) -> None:
        models = [self.model] + ([self.ema.module] if self.ema is not None else [])
        bad = sum(not torch.isfinite(t).all().item() for m in models for t in m.state_dict().values()
                  if t.is_floating_point())
        if all_reduce_sum([float(bad)], self.device, self.info)[0]:
            raise self._diverged(f"{bad} weight tensor(s) became NaN/inf by epoch {self.epoch + 1}, step "
                                 f"{self.step_in_epoch} (global step {self.global_step})")

    def _should_stop(self) -> bool:
        flag = all_reduce_sum([1.0 if self.stop.requested else 0.0], self.device, self.info)[0]
        return flag > 0

    # ----------------------------------------------------------------------------------- end of an epoch
    def _end_epoch(self, images_per_s: float, epoch_time: float, lr: float) -> None:
        loss_sum, correct, count = all_reduce_sum(self.running, self.device, self.info)
        row: dict[str, Any] = {"epoch": self.epoch + 1, "global_step": self.global_step, "lr": lr,
                               "train_loss": loss_sum / max(1, count), "train_acc": correct / max(1, count)}
        last = self.epoch + 1 == self.cfg.epochs
        if (self.epoch + 1) % self.cfg.eval_every == 0 or last:
            raw = self.run_setup.evaluate(self.model)
            row |= {"val_loss": raw["loss"], "val_acc": raw["top1"], "val_acc5": raw["top5"]}
            if self.ema is not None:
                ema = self.run_setup.evaluate(self.ema.module)
                row |= {"ema_val_loss": ema["loss"], "ema_val_acc": ema["top1"], "ema_val_acc5": ema["top5"]}
        stage = self.stage
        assert stage is not None
        row |= {"image_size": stage.image_size, "magnitude": stage.magnitude, "mixup_alpha": stage.mixup_alpha,
                "dropout": stage.dropout, "img_per_s": round(images_per_s, 2), "epoch_time_s": round(epoch_time, 2)}
        losses = {key: row[key] for key in ("train_loss", "val_loss", "ema_val_loss") if key in row}
        if not all(math.isfinite(value) for value in losses.values()):  # never kept, never "best"
            raise self._diverged(f"epoch {self.epoch + 1} ended with non-finite losses {losses}")
        self.history.append(row)
        is_best = row.get("val_acc", -1.0) > self.best_val_acc
        self.best_val_acc = max(self.best_val_acc, row.get("val_acc", -1.0))
        self.epoch += 1
        self.step_in_epoch = 0
        self.running = [0.0, 0.0, 0.0]
        self._save(is_best=is_best)
        self.log(self.report.describe_row(row))
        self.report.epoch_end(self.history)

    def _save(self, *, is_best: bool) -> None:
        """Checkpoint the exact position (every rank takes part: RNG states and partial sums are gathered)."""
        self._check_finite_weights()
        rng = collect_rng(self.info)
        running = all_reduce_sum(self.running, self.device, self.info)
        if self.info.enabled:
            # From now on the global partial sums live on rank 0 (matching what the checkpoint says).
            self.running = running if self.info.is_main else [0.0, 0.0, 0.0]
        if not (self.info.is_main and self.checkpoints):
            return
        setup = self.run_setup
        checkpoint = Checkpoint(
            spec=setup.spec,
            num_classes=setup.data.num_classes,
            class_names=tuple(setup.data.class_names),
            preprocess=setup.preprocess,
            model=self.model.state_dict(),
            ema=self.ema.state_dict() if self.ema is not None else None,
            config=self.cfg.to_dict(),
            steps_per_epoch=setup.steps_per_epoch,
            fast_settings=self.fast.to_dict(),
            optimizer=self.optimizer.state_dict(),
            scaler=self.scaler.state_dict() if self.scaler is not None else None,
            epoch=self.epoch,
            step_in_epoch=self.step_in_epoch,
            global_step=self.global_step,
            running=tuple(running),
            history=tuple(self.history),
            best_val_acc=self.best_val_acc,
            rng=tuple(rng),
        )
        self.checkpoints.save(checkpoint, is_best=is_best)

    def _result(self, seconds: float) -> TrainResult:
        evaluated = [row for row in self.history if "val_acc" in row]
        ema_rows = [row for row in evaluated if "ema_val_acc" in row]
        final = evaluated[-1] if evaluated else {}
        best = self.checkpoints.best if self.checkpoints and self.checkpoints.best.is_file() else None
        return TrainResult(
            run_dir=self.run_setup.run_dir or Path(),
            epochs=self.epoch,
            best_val_acc=max((row["val_acc"] for row in evaluated), default=math.nan),
            final_val_acc=final.get("val_acc", math.nan),
            final_val_loss=final.get("val_loss", math.nan),
            best_ema_val_acc=max((row["ema_val_acc"] for row in ema_rows), default=None),
            final_ema_val_acc=ema_rows[-1]["ema_val_acc"] if ema_rows else None,
            history=list(self.history),
            num_params=sum(p.numel() for p in self.model.parameters()),
            train_seconds=seconds,
            best_checkpoint=best,
        )
