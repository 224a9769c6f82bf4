"""Top-1 / top-5 / loss of a model on a dataset, and of a checkpoint or weights file on its run's data."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from effnet._util.filecheck import build, require_mapping
from effnet.data import DataConfig, build_datasets
from effnet.deploy.runtimes import is_exported, open_exported
from effnet.preprocess import tf_crop_pct
from effnet.train.distributed import DistInfo, all_reduce_sum
from effnet.weights import load_model, read_file


def resolve_device(name: str) -> torch.device:
    """'auto' (a GPU when there is one), 'cpu', 'cuda', 'cuda:N' or 'mps' as a torch.device, checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for but no GPU is available; use device 'cpu' or 'auto'")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for but it is not available here; use device 'cpu' or 'auto'")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from err


def autocast_context(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager:
    """torch.autocast for `amp` ('bf16' | 'fp16' | None) on `device`."""
    if amp is None:
        return contextlib.nullcontext()
    if amp == "fp16" and device.type == "cpu":
        raise ValueError("amp='fp16' needs a GPU; on CPU use amp='bf16'")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    *,
    amp: str | None = None,
    channels_last: bool = False,
    info: DistInfo | None = None,
    prepare: Callable[[Any, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> dict[str, float]:
    """Mean cross-entropy (no smoothing), top-1 and top-5 accuracy in [0, 1], summed over DDP processes.

    prepare: turns a loader batch into (images, targets) on `device` (the GPU input pipeline); default: a copy.
    """
    info = info or DistInfo()
    was_training = model.training
    model.eval()
    loss_sum = correct1 = correct5 = count = 0.0
    for images, targets in loader:
        images, targets = prepare(images, targets) if prepare else (images.to(device), targets.to(device))
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast_context(device, amp):
            logits = model(images)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, targets, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == targets[:, None]
        correct1 += hits[:, 0].sum().item()
        correct5 += hits.any(dim=1).sum().item()
        count += targets.numel()
    model.train(was_training)
    loss_sum, correct1, correct5, count = all_reduce_sum([loss_sum, correct1, correct5, count], device, info)
    if count == 0:
        raise ValueError("the validation set is empty; check the data config")
    return {"loss": loss_sum / count, "top1": correct1 / count, "top5": correct5 / count, "count": int(count)}


def evaluate_checkpoint(
    path: str | Path,
    *,
    model: str | None = None,
    use_ema: bool = True,
    data: dict[str, Any] | None = None,
    image_size: int | None = None,
    batch_size: int = 64,
    device: str = "auto",
) -> dict[str, Any]:
    """Loss / top-1 / top-5 of a checkpoint, weights file or exported graph on the validation set of its run.

    `data` overrides that run's data options (DataConfig fields). Refuses weights or a loss that are not finite.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    file = None if is_exported(path) else read_file(path)
    # An exported .onnx / OpenVINO .xml runs on its runtime with the preprocessing and class names it records.
    net = open_exported(path, model) if file is None else load_model(file, model, use_ema=use_ema)
    bad = [name for name, tensor in net.state_dict().items()
           if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise ValueError(f"{path}: {len(bad)} weight tensor(s) hold NaN/inf (e.g. {bad[0]}); the run diverged "
                         "there, evaluate an earlier checkpoint")
    # A checkpoint evaluates on its own run's validation set unless `data` says otherwise.
    # (The file's data options are checked like any value read from a file: a wrong key or type names the file.)
    saved = ((file.config if file else None) or {}).get("data") or {}
    saved = require_mapping(saved, "'config' data options", path)
    values = saved | {k: v for k, v in (data or {}).items() if v is not None}
    pair = build_datasets(build(lambda options: DataConfig(**options), values, path, "'config' data options"))
    if net.num_classes != pair.num_classes:
        raise ValueError(f"the model has {net.num_classes} outputs but {values.get('name', 'shapes')} has "
                         f"{pair.num_classes} classes; evaluate on the data it was trained for")
    pre = net.preprocess
    size = image_size or pre.input_size
    crop_pct = pre.crop_pct if size == pre.input_size else tf_crop_pct(size)
    pair.val.transform = replace(pre, input_size=size, crop_pct=crop_pct).transforms()
    target = resolve_device(device)
    metrics: dict[str, Any] = evaluate(net.to(target), DataLoader(pair.val, batch_size=batch_size), target)
    if not math.isfinite(metrics["loss"]):
        raise ValueError(f"{path}: the validation loss is {metrics['loss']} (the weights give non-finite logits)")
    return metrics | {"weights": str(path), "image_size": size, "crop_pct": round(crop_pct, 4)}
