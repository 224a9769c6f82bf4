"""Top-1 / top-5 / loss of a model on a dataset, and loading a trained model back for evaluation."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from effnet.train.distributed import DistInfo, all_reduce_sum


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
    from effnet.train.checkpoint import CHECKPOINT_FORMAT
    from effnet.zoo import Preprocess, create_model

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    if path.suffix in (".pt", ".pth"):
        state = torch.load(path, map_location="cpu", weights_only=True)
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
