"""Top-1 / top-5 / loss of a model on a dataset, and loading a trained model back for evaluation."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from effnet.train.distributed import DistInfo, all_reduce_sum


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
) -> dict[str, float]:
    """Mean cross-entropy (no smoothing), top-1 and top-5 accuracy in [0, 1], summed over DDP processes."""
    info = info or DistInfo()
    was_training = model.training
    model.eval()
    loss_sum = correct1 = correct5 = count = 0.0
    for images, targets in loader:
        images, targets = images.to(device), targets.to(device)
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


def load_trained_model(path: str | Path, *, model: str | None = None, use_ema: bool = True) -> nn.Module:
    """A model from an `effnet train` checkpoint (its EMA weights by default) or any weights file effnet reads.

    Checkpoints and effnet .safetensors files carry their spec; other files need `model` (a name or spec file).
    """
    from effnet.net import EfficientNet
    from effnet.train.checkpoint import CHECKPOINT_FORMAT, read_torch_file
    from effnet.zoo import Preprocess, create_model

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    if path.suffix in (".pt", ".pth"):
        state = read_torch_file(path)
        if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
            from effnet.specs import NetSpec

            spec = NetSpec.from_dict(state["spec"])
            net = EfficientNet(spec, num_classes=int(state["num_classes"]))
            weights = state["ema"]["module"] if use_ema and state.get("ema") else state["model"]
            net.load_state_dict(weights)
            saved = state.get("preprocess")
            if saved:  # otherwise the spec's default, which EfficientNet already set
                net.preprocess = Preprocess(**{**saved, "mean": tuple(saved["mean"]), "std": tuple(saved["std"])})
            net.class_names = list(state.get("class_names") or [])
            return net
    if path.suffix == ".safetensors" and model is None:
        from effnet.weights import load_model

        return load_model(path)
    if model is None:
        raise ValueError(f"{path} does not record its architecture; pass the model name or spec file (--model)")
    from effnet.weights import read_weights
    from effnet.weights.layouts import detect_layout, rename_to_effnet

    state_dict, _ = read_weights(path)
    # The classifier's row count tells the number of classes the weights were trained for.
    names = rename_to_effnet(create_model(model, num_classes=1), detect_layout(set(state_dict)))
    classifier_key = names["classifier.weight"]
    num_classes = state_dict[classifier_key].shape[0] if classifier_key in state_dict else 0
    return create_model(model, num_classes=num_classes, weights=path)


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
    """Loss / top-1 / top-5 of a checkpoint or weights file on the validation set of the run it came from.

    `data` overrides that run's data options (DataConfig fields). Refuses weights or a loss that are not finite.
    """
    from effnet.data import DataConfig, build_datasets, eval_transform

    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    net = load_trained_model(path, model=model, use_ema=use_ema)
    bad = [name for name, tensor in net.state_dict().items()
           if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise ValueError(f"{path}: {len(bad)} weight tensor(s) hold NaN/inf (e.g. {bad[0]}); the run diverged "
                         "there, evaluate an earlier checkpoint")
    values = _saved_data_config(Path(path)) | {k: v for k, v in (data or {}).items() if v is not None}
    pair = build_datasets(DataConfig(**values))
    if net.num_classes != pair.num_classes:
        raise ValueError(f"the model has {net.num_classes} outputs but {values.get('name', 'shapes')} has "
                         f"{pair.num_classes} classes; evaluate on the data it was trained for")
    pre = net.preprocess
    size = image_size or pre.input_size
    crop_pct = pre.crop_pct if size == pre.input_size else size / (size + 32)
    pair.val.transform = eval_transform(size, crop_pct, pre.interpolation, pre.mean, pre.std)
    target = resolve_device(device)
    metrics: dict[str, Any] = evaluate(net.to(target), DataLoader(pair.val, batch_size=batch_size), target)
    if not math.isfinite(metrics["loss"]):
        raise ValueError(f"{path}: the validation loss is {metrics['loss']} (the weights give non-finite logits)")
    return metrics | {"weights": str(path), "image_size": size, "crop_pct": round(crop_pct, 4)}


def _saved_data_config(path: Path) -> dict[str, Any]:
    """The data section of the run a checkpoint came from (so eval defaults to the same validation set)."""
    if path.suffix not in (".pt", ".pth"):
        return {}
    from effnet.train.checkpoint import read_torch_file

    state = read_torch_file(path)
    if isinstance(state, dict) and isinstance(state.get("config"), dict):
        return dict(state["config"].get("data") or {})
    return {}
