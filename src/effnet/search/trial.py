"""What one trial is: train a spec under a fixed budget with the training engine and report its accuracy."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from effnet.data import DataConfig, build_datasets
from effnet.models.scaling import scale
from effnet.models.specs import B0, NetSpec, ScalingRules
from effnet.preprocess import preprocess_transform
from effnet.search.runner import TrialTask
from effnet.train import TrainConfig, fit
from effnet.train.recipes import RECIPES, SHORT_RUN
from effnet.weights import load_model

PROXY_NAME = "b0_proxy"
QUICK = RECIPES["quick"]  # `effnet train`'s preset: its budget is the default trial's


def proxy_spec(width: float = 0.5, depth: float = 0.5, resolution: int = 64) -> NetSpec:
    """A small B0 for searching on 2 CPU cores: half width, half depth (10 blocks), 64 px.

    Channels round to multiples of 4 instead of 8: at these widths a multiple of 8 would turn beta = 1.1 into
    no change at all for most stages, and the search could not tell width from nothing. 64 px rather than less:
    below ~56 px the multiply-adds jump by 30% between neighbouring input sizes (65 px maps to 33, 17, 9, 5, 3),
    so resolution-only scaling could not be matched to a 2x target within 10%.
    """
    rules = replace(B0.rules, channel_divisor=4)
    spec = scale(B0.replace(rules=rules), width=width, depth=depth, depth_rounding="round", name=PROXY_NAME)
    # A short run needs little regularization (no stochastic depth, light dropout) and BatchNorm statistics
    # that follow a few hundred steps (PyTorch's momentum 0.1, not TF's 0.01).
    return spec.replace(
        resolution=resolution, dropout=0.1, drop_path_rate=0.0, norm_momentum=0.1, rules=ScalingRules(channel_divisor=4)
    )


def proxy_train_config(
    *,
    epochs: int = QUICK["epochs"],
    num_train: int = DataConfig.num_train,
    num_val: int = DataConfig.num_val,
    batch_size: int = QUICK["batch_size"],
    seed: int = 0,
) -> TrainConfig:
    """The short-run recipe (`effnet.train.recipes.SHORT_RUN`) on the proxy, with `effnet train`'s quick budget.

    By default each trial gets the main command's budget: 6 epochs of 5,000 built-in images in batches of 25,
    1,000 validation images, the images rendered at 96 px (enough for the largest grid
    resolution, 83 px); each trial trains at its own spec's resolution. A third of that budget leaves the base
    at the fill-only ~20% and cannot rank candidates (README, "Scaling science").
    """
    return TrainConfig.from_dict(
        {
            **SHORT_RUN,
            "model": PROXY_NAME,
            "data": DataConfig(name="shapes", num_train=num_train, num_val=num_val, seed=seed, render_size=96),
            "epochs": epochs,
            "batch_size": batch_size,
            "seed": seed,
            "deterministic": True,
            "device": "cpu",
            "tensorboard": False,
            "plot": False,
            "keep_last": 1,
        }
    )


def render_for(train: TrainConfig, specs: Sequence[NetSpec]) -> TrainConfig:
    """The budget with the built-in shapes drawn at least at the largest trial resolution (one drawing for every
    trial), so that no model is trained on upsampled images, e.g. resolution-only scaling at 4x (128 px)."""
    largest = max(spec.resolution for spec in specs)
    if train.data.name != "shapes" or largest <= train.data.render_size:
        return train
    return replace(train, data=replace(train.data, render_size=largest))


def fingerprint(base: NetSpec, train: TrainConfig, extra: dict[str, Any] | None = None) -> str:
    """A short hash of everything that changes trial results, so a journal is only resumed by the same search."""
    payload = {"base": base.to_dict(), "train": train.to_dict(), **(extra or {})}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_trial(task: TrialTask) -> dict[str, Any]:
    """The default trial: `fit` the task's spec with the task's TrainConfig, seed and run folder."""
    config: TrainConfig = task.settings
    config = config.replace(seed=task.seed, output_dir=task.run_dir, run_name=task.trial_id, resume=False)
    # A trial cut short by a killed search starts again from scratch in its own folder.
    result = fit(config, spec=task.spec, progress=False, overwrite=True)
    return {
        "best_val_acc": result.best_val_acc,
        "final_val_acc": result.final_val_acc,
        "final_val_loss": result.final_val_loss,
        "num_params": result.num_params,
        "train_seconds": result.train_seconds,
        "run_dir": str(result.run_dir),
        **outline_fill_accuracy(result.run_dir, config),
    }


@torch.no_grad()
def outline_fill_accuracy(run_dir: str | Path, config: TrainConfig) -> dict[str, float]:
    """Built-in shapes only: the share of val images whose outline, and whose fill, the final weights get right.

    A class is "outline/fill"; a model that reads only outlines scores ~100% on outline and ~50% on fill (so
    ~50% top-1), and only one that also resolves the fine stripes gets the fill right. Other data: {}.
    """
    if config.data.name != "shapes":
        return {}
    model = load_model(Path(run_dir) / "checkpoints" / "last.pt", use_ema=False).eval()
    data = build_datasets(config.data)
    data.val.transform = preprocess_transform(model.preprocess)
    parts = [name.split("/") for name in data.class_names]
    outline_of = torch.tensor([sorted({p[0] for p in parts}).index(p[0]) for p in parts])
    fill_of = torch.tensor([sorted({p[1] for p in parts}).index(p[1]) for p in parts])
    top1 = outline = fill = count = 0
    for images, labels in DataLoader(data.val, batch_size=config.batch_size):
        predicted = model(images).argmax(dim=1)
        top1 += int((predicted == labels).sum())
        outline += int((outline_of[predicted] == outline_of[labels]).sum())
        fill += int((fill_of[predicted] == fill_of[labels]).sum())
        count += labels.numel()
    return {"val_top1_recount": top1 / count, "outline_acc": outline / count, "fill_acc": fill / count}
