"""Everything a run builds before its first step: model, data, optimizer, schedule, stages, run folder."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from effnet._util.hardware import bf16_cpu_warning
from effnet.data import DatasetPair, MixupCutmix, build_datasets, train_transform
from effnet.data.folder import ImageFolderDataset, crop_draft_side
from effnet.data.gpu import BatchEvalTransform, BatchTrainTransform, GpuInputPipeline, gpu_input_pipeline
from effnet.models.specs import NetSpec
from effnet.preprocess import Preprocess, preprocess_transform
from effnet.train.checkpoint import Checkpoint
from effnet.train.config import TrainConfig
from effnet.train.distributed import DistInfo, broadcast_object
from effnet.train.ema import ModelEma
from effnet.train.evaluate import evaluate
from effnet.train.fast import FastSettings, apply_fast_settings, probe_machine, resolve_fast_settings
from effnet.train.finetune import starting_weights, step_floor_batch_size
from effnet.train.metrics import RunLogger
from effnet.train.optim import build_optimizer
from effnet.train.progress import ProgressReporter
from effnet.train.progressive import (
    ProgressiveStage,
    default_range,
    progressive_stages,
    stage_at,
)
from effnet.train.resume import check_resumable, find_resume_checkpoint
from effnet.train.runfolder import RunFolderLock, open_run_folder
from effnet.train.sampling import ShardedEval
from effnet.train.schedule import LRSchedule
from effnet.train.start import build_model, resolve_preprocess, resolve_run
from effnet.train.syncbn import convert_sync_batchnorm


@dataclass
class RunSetup:
    """The built pieces of a run (see `build_run`) and small helpers the loop calls; what the run shows and
    records goes through `reporter`."""

    config: TrainConfig
    info: DistInfo
    device: torch.device
    spec: NetSpec
    model: nn.Module
    ema: ModelEma | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    schedule: LRSchedule
    data: DatasetPair
    val_loader: DataLoader
    preprocess: Preprocess
    stages: list[ProgressiveStage]
    batch_per_rank: int
    steps_per_epoch: int
    run_dir: Path | None
    reporter: ProgressReporter
    fast: FastSettings  # what the config's `auto` options became on this device
    lock: RunFolderLock | None = None  # held (rank 0) while the run writes its folder
    resume_state: Checkpoint | None = None  # the checkpoint a resumed run continues from
    gpu_input: GpuInputPipeline | None = None  # --input-pipeline gpu: decode + augment batches on the device

    def stage_at(self, epoch: int) -> ProgressiveStage:
        """Image size / magnitude / mixup / dropout for `epoch`."""
        return stage_at(self.stages, epoch)

    def _augment_options(self, stage: ProgressiveStage) -> dict[str, Any]:
        cfg, pre = self.config, self.preprocess
        return {
            "interpolation": pre.interpolation,
            "mean": tuple(pre.mean),
            "std": tuple(pre.std),
            "scale": cfg.crop_scale,
            "hflip": cfg.hflip,
            "augment": cfg.augment,
            "magnitude": stage.magnitude,
            "num_ops": cfg.randaugment_ops,
            "re_prob": cfg.random_erasing,
        }

    def train_transform(self, stage: ProgressiveStage) -> Callable | None:
        """The training preprocessing at a stage's size and RandAugment magnitude (with the GPU input pipeline:
        only what the workers do, reading or rendering)."""
        if self.gpu_input is not None:
            return self.gpu_input.prepare_dataset(self.data.train)
        if isinstance(self.data.train, ImageFolderDataset):  # JPEGs decode at reduced size where the crops allow
            self.data.train.draft_min_side = crop_draft_side(stage.image_size, self.config.crop_scale[0])
        return train_transform(stage.image_size, **self._augment_options(stage))

    def to_device(self, stage: ProgressiveStage) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
        """What turns a loader batch into (images, targets) on the device: a copy, or the GPU input pipeline
        (called with the batch's (epoch, step), from which its augmentation is drawn)."""
        if self.gpu_input is not None:
            return partial(self.gpu_input.batch, BatchTrainTransform(stage.image_size, **self._augment_options(stage)))
        return lambda images, targets, position=None: (
            images.to(self.device, non_blocking=True),
            targets.to(self.device, non_blocking=True),
        )

    def mixer(self, stage: ProgressiveStage) -> MixupCutmix:
        """Mixup/cutmix at the stage's alphas, with label smoothing folded into the targets."""
        return MixupCutmix(
            self.data.num_classes,
            mixup_alpha=stage.mixup_alpha,
            cutmix_alpha=stage.cutmix_alpha,
            label_smoothing=self.config.label_smoothing,
            mode=self.config.mix_mode or "batch",
        )

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Loss / top-1 / top-5 on the validation set (all processes together)."""
        prepare = partial(self.gpu_input.batch, BatchEvalTransform(self.preprocess)) if self.gpu_input else None
        return evaluate(
            model,
            self.val_loader,
            self.device,
            amp=self.fast.amp,
            channels_last=self.fast.channels_last,
            info=self.info,
            prepare=prepare,
        )


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed torch, numpy and python; in deterministic mode also ask torch for deterministic kernels."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def _apply_step_floor(cfg: TrainConfig, num_images: int, world_size: int, log: Callable[[str], None]) -> TrainConfig:
    """The config with its batch size lowered until the run takes `min_steps` optimizer steps (small data)."""
    batch_size = step_floor_batch_size(cfg.batch_size, num_images, cfg.epochs, cfg.min_steps, world_size)
    if batch_size == cfg.batch_size:
        return cfg
    log(
        f"batch size {cfg.batch_size} -> {batch_size}: {num_images} images x {cfg.epochs} epochs then give "
        f"{cfg.epochs * (num_images // batch_size)} optimizer steps (min_steps {cfg.min_steps}; 0 turns this off)"
    )
    return cfg.replace(batch_size=batch_size)


def _stages(cfg: TrainConfig, spec: NetSpec, image_size: int) -> list[ProgressiveStage]:
    if not cfg.progressive:
        dropout = cfg.dropout if cfg.dropout is not None else spec.dropout
        return [
            ProgressiveStage(
                0, 0, cfg.epochs, image_size, cfg.randaugment_magnitude, cfg.mixup_alpha, dropout, cfg.cutmix_alpha
            )
        ]
    model_spec = spec if cfg.dropout is None else spec.replace(dropout=cfg.dropout)
    table = default_range(model_spec, image_size, cfg.progressive_schedule)
    chosen = replace(
        table,
        image_size=cfg.progressive_image_size or table.image_size,
        magnitude=cfg.progressive_magnitude or table.magnitude,
        mixup_alpha=cfg.progressive_mixup or table.mixup_alpha,
        dropout=cfg.progressive_dropout or table.dropout,
        cutmix_alpha=cfg.progressive_cutmix or table.cutmix_alpha,
    )
    return progressive_stages(chosen, cfg.epochs, cfg.progressive_stages)


def _run_dir(
    cfg: TrainConfig, spec: NetSpec, info: DistInfo, overwrite: bool
) -> tuple[Path, RunFolderLock | None, list[str]]:
    """Create and lock the run folder on rank 0 (see `open_run_folder`); every rank gets its path."""
    if cfg.resume and not cfg.run_name:
        raise ValueError("resume needs the run's folder: set run_name (--run-name) or pass --resume RUN_DIR")
    path, lock, notes = None, None, []
    if info.is_main:
        base = Path(cfg.output_dir)
        name = cfg.run_name or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        path, suffix = base / name, 1
        while cfg.run_name is None and path.exists():  # many quick runs in one second get distinct folders
            path, suffix = base / f"{name}-{suffix}", suffix + 1
        lock, notes = open_run_folder(path, named=cfg.run_name is not None, resume=cfg.resume, overwrite=overwrite)
    return Path(str(broadcast_object(str(path) if path else None, info))), lock, notes


def build_run(
    cfg: TrainConfig,
    spec: NetSpec | None,
    device: torch.device,
    info: DistInfo,
    progress: bool,
    overwrite: bool = False,
    bar: bool = True,
) -> RunSetup:
    """Seed, build data/model/optimizer/schedule/EMA, create the run folder and write the config.

    `progress`: the run's lines on the console; `bar`: also the live bar (drawn only on a terminal).
    """
    seed_everything(cfg.seed, cfg.deterministic)
    start = starting_weights(cfg.pretrained, cfg.weights, cfg.model)
    cfg, spec = resolve_run(cfg, spec, start)
    lines: list[str] = []
    data = build_datasets(cfg.data)
    cfg = _apply_step_floor(cfg, len(data.train), info.world_size, lines.append)
    batch_per_rank, steps_per_epoch = _steps(cfg, len(data.train), info.world_size)
    fast = _fast_settings(cfg, spec, device, steps_per_epoch)
    apply_fast_settings(fast)
    model = build_model(cfg, spec, data.num_classes, start, lines.append)
    gpu_input = gpu_input_pipeline(cfg.input_pipeline, device, lines.append, seed=cfg.seed, rank=info.rank)
    del start  # its tensors now live in the model
    # After the data and weights load: a bad path leaves no empty folder. From here the folder is locked.
    run_dir, lock, notes = _run_dir(cfg, spec, info, overwrite)
    try:
        resume_state = _resume_state(cfg, spec, info, run_dir, data.num_classes, steps_per_epoch, notes)
        setup = _assemble(
            cfg, info, device, spec, model, data, batch_per_rank, steps_per_epoch, run_dir, progress, fast, gpu_input
        )
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    setup.lock, setup.resume_state, setup.gpu_input = lock, resume_state, gpu_input
    setup.reporter.bar = bar
    amp_warning = bf16_cpu_warning(device.type, fast.amp)
    notes += [*fast.notes, *([amp_warning] if amp_warning else [])]
    if info.is_main:
        cfg.replace(resume=False).save_yaml(run_dir / "config.yaml", fast_settings=fast.to_dict())
        spec.save(run_dir / "spec.json")
    for line in [*_describe(setup), *lines, *notes, *_frozen_note(cfg)]:
        setup.reporter.log(line)
    return setup


def _frozen_note(cfg: TrainConfig) -> list[str]:
    """The line saying which layers stay frozen for the whole run, if any do."""
    if not cfg.frozen_stages:
        return []
    frozen = "the whole backbone" if cfg.frozen_stages == -1 else f"the stem and {cfg.frozen_stages} stage(s)"
    return [f"{frozen} frozen for the whole run (BN statistics too); --frozen-stages 0 trains all"]


def _steps(cfg: TrainConfig, num_images: int, world_size: int) -> tuple[int, int]:
    """(images per process per step, steps per epoch) of the config's batch size on `world_size` processes."""
    if cfg.batch_size % world_size:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the {world_size} processes")
    batch_per_rank = cfg.batch_size // world_size
    steps_per_epoch = -(-num_images // world_size) // batch_per_rank
    if steps_per_epoch < 1:
        raise ValueError(
            f"batch_size {cfg.batch_size} is larger than the {num_images} training images; lower --batch-size"
        )
    return batch_per_rank, steps_per_epoch


def _resume_state(
    cfg: TrainConfig,
    spec: NetSpec,
    info: DistInfo,
    run_dir: Path,
    num_classes: int,
    steps_per_epoch: int,
    notes: list[str],
) -> Checkpoint | None:
    """The checkpoint a --resume run continues from (None: none yet, or not resuming), checked to belong to this
    run before config.yaml is rewritten, so that a refused resume changes nothing."""
    if not cfg.resume:
        return None
    state, resume_notes = find_resume_checkpoint(run_dir, cfg.keep_last, info)
    notes += resume_notes
    if state is not None:
        check_resumable(state, cfg, spec, num_classes, steps_per_epoch)
    return state


def _describe(setup: RunSetup) -> list[str]:
    """The two header lines of a run: what trains on what, and how."""
    cfg, data, spec = setup.config, setup.data, setup.spec
    params = sum(p.numel() for p in setup.model.parameters())
    return [
        f"run folder {setup.run_dir}: {spec.name}, {params:,} params, {data.num_classes} classes, "
        f"{len(data.train)} train / {len(data.val)} val images, {setup.info.world_size} process(es) on {setup.device}",
        f"{cfg.epochs} epochs x {setup.steps_per_epoch} steps of {cfg.batch_size} images at "
        f"{setup.stages[0].image_size}px (eval {setup.preprocess.input_size}px), {cfg.optimizer} peak lr "
        f"{cfg.peak_lr:.4g}, {cfg.schedule} schedule, warm-up {cfg.warmup:g} epochs, EMA {cfg.ema_decay:g}",
        setup.fast.describe(),
    ]


def _fast_settings(cfg: TrainConfig, spec: NetSpec, device: torch.device, steps_per_epoch: int) -> FastSettings:
    """The config's `auto` runtime options resolved for `device` on this machine (see effnet.train.fast)."""
    image_size = cfg.image_size or spec.train_resolution or spec.resolution
    sizes = {stage.image_size for stage in _stages(cfg, spec, image_size)}
    return resolve_fast_settings(
        cfg, device, probe_machine(device), total_steps=cfg.epochs * steps_per_epoch, image_sizes=len(sizes)
    )


def _assemble(
    cfg: TrainConfig,
    info: DistInfo,
    device: torch.device,
    spec: NetSpec,
    model: nn.Module,
    data: DatasetPair,
    batch_per_rank: int,
    steps_per_epoch: int,
    run_dir: Path,
    progress: bool,
    fast: FastSettings,
    gpu_input: GpuInputPipeline | None = None,
) -> RunSetup:
    """Eval loader, model on its device, EMA, optimizer, scaler, schedule, stages and reporter."""
    preprocess = resolve_preprocess(cfg, spec, model.preprocess)
    val_loader = _val_loader(data, preprocess, info, batch_per_rank, fast, gpu_input)
    if cfg.sync_bn and info.enabled:
        model = convert_sync_batchnorm(model, device)
    model = model.to(device)
    if fast.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = ModelEma(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    optimizer, schedule = _optimizer_and_schedule(cfg, model, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type) if fast.amp == "fp16" else None
    stages = _stages(cfg, spec, cfg.image_size or spec.train_resolution or spec.resolution)
    logger = RunLogger(run_dir, tensorboard=cfg.tensorboard, plot=cfg.plot, purge_step=None) if info.is_main else None
    reporter = ProgressReporter(
        epochs=cfg.epochs,
        steps_per_epoch=steps_per_epoch,
        global_batch=cfg.batch_size,
        is_main=info.is_main,
        show_progress=progress,
        logger=logger,
    )
    parts = (cfg, info, device, spec, model, ema, optimizer, scaler, schedule, data, val_loader, preprocess, stages)
    return RunSetup(*parts, batch_per_rank, steps_per_epoch, run_dir, reporter, fast)


def _val_loader(
    data: DatasetPair,
    preprocess: Preprocess,
    info: DistInfo,
    batch_per_rank: int,
    fast: FastSettings,
    gpu_input: GpuInputPipeline | None,
) -> DataLoader:
    """The validation loader, sharded over the processes, with the run's eval preprocessing."""
    # With the GPU input pipeline, val images are read in workers and resized on the device (BatchEvalTransform).
    data.val.transform = gpu_input.prepare_dataset(data.val) if gpu_input else preprocess_transform(preprocess)
    val = ShardedEval(data.val, info.rank, info.world_size) if info.enabled else data.val
    return DataLoader(
        val,
        batch_size=max(1, batch_per_rank),
        num_workers=fast.num_workers,
        pin_memory=fast.pin_memory,
        prefetch_factor=fast.prefetch_factor,
        persistent_workers=fast.persistent_workers,
        collate_fn=gpu_input.collate if gpu_input else None,
    )


def _optimizer_and_schedule(
    cfg: TrainConfig, model: nn.Module, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, LRSchedule]:
    """The config's optimizer over the model (on its device) and its learning-rate schedule."""
    optimizer = build_optimizer(
        model,
        cfg.optimizer,
        cfg.peak_lr,
        weight_decay=cfg.weight_decay,
        momentum=cfg.momentum,
        rho=cfg.rmsprop_decay,
        eps=cfg.rmsprop_eps,
    )
    warmup_steps = int(round(cfg.warmup * steps_per_epoch))
    schedule = LRSchedule(
        cfg.peak_lr,
        steps_per_epoch,
        steps_per_epoch * cfg.epochs,
        warmup_steps,
        cfg.schedule,
        cfg.decay_rate,
        cfg.decay_epochs,
        cfg.min_lr,
    )
    return optimizer, schedule
