"""What a run starts from, finished before anything is built: its starting weights' settings in the spec, the
config's reference defaults, the model with those weights, and the eval preprocessing its checkpoints record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from effnet.models.catalog import resolve_spec
from effnet.models.layers.conv_norm_act import use_memory_efficient_activations
from effnet.models.registry import create_model
from effnet.models.scaling import scale
from effnet.models.specs import NetSpec
from effnet.preprocess import Preprocess, default_preprocess
from effnet.train.config import TrainConfig
from effnet.train.finetune import zero_classifier
from effnet.train.reference import with_reference_defaults
from effnet.weights import WeightFile, layer_settings, load_model
from effnet.weights.pretrained import PretrainedRecord

Start = WeightFile | PretrainedRecord | None  # what a run starts from (see `finetune.starting_weights`)


def resolve_run(cfg: TrainConfig, spec: NetSpec | None, start: Start) -> tuple[TrainConfig, NetSpec]:
    """The run's config and spec, finished once before building: name -> spec -> the family's reference recipe
    (read from the name, before scaling renames the spec) -> scaled -> the padding and BN eps the starting
    weights need -> the config's dropout, drop path and BN momentum. Nothing edits the model later."""
    spec = spec if spec is not None else resolve_spec(cfg.model)
    cfg = with_reference_defaults(cfg, spec)
    if cfg.width != 1.0 or cfg.depth != 1.0:
        spec = scale(spec, width=cfg.width, depth=cfg.depth)
    padding, norm_eps = layer_settings(start, spec) if start is not None else (None, None)
    overrides = {
        "padding": padding,
        "norm_eps": norm_eps,
        "dropout": cfg.dropout,
        "drop_path_rate": cfg.drop_path_rate,
        "norm_momentum": cfg.bn_momentum,
    }
    return cfg, spec.replace(**{key: value for key, value in overrides.items() if value is not None})


def resolve_run_spec(cfg: TrainConfig, spec: NetSpec | None, start: Start) -> NetSpec:
    """The run's finished spec (see `resolve_run`)."""
    return resolve_run(cfg, spec, start)[1]


def resolve_preprocess(cfg: TrainConfig, spec: NetSpec, weights: Preprocess) -> Preprocess:
    """The run's eval preprocessing (saved in its checkpoints): the family's eval protocol at the run's eval size
    (V2-S/M/L/XL: no crop from 320 px; a crop when eval_crop_pct says so) with the weights' mean, std and
    interpolation."""
    eval_size = cfg.eval_size or cfg.image_size or spec.resolution
    preprocess = replace(
        default_preprocess(spec, eval_size),
        mean=weights.mean,
        std=weights.std,
        interpolation=cfg.interpolation or weights.interpolation,
    )
    if cfg.eval_crop_pct is not None:
        preprocess = replace(preprocess, crop_pct=cfg.eval_crop_pct, resize_mode="crop")
    return preprocess


def build_model(
    cfg: TrainConfig, spec: NetSpec, num_classes: int, start: Start, log: Callable[[str], None] = lambda line: None
) -> nn.Module:
    """The run's model from its finished spec: the starting weights (with their preprocessing) and, for a new
    classifier on loaded weights, zero logits (unless zero_init_classifier says otherwise)."""
    replaced = True  # whether the classifier is fresh (not loaded)
    if start is None:
        model = create_model(spec, num_classes=num_classes)
    else:
        # The spec has the settings the weights need already (resolve_run): the loader builds it as it is and
        # brings the weights' preprocessing; a different class count gets a fresh classifier.
        model = load_model(
            start,
            spec,
            num_classes=num_classes,
            reset_classifier=True,
            use_ema=False,
            padding=spec.padding,
            norm_eps=spec.norm_eps,
        )
        source = start.name if isinstance(start, PretrainedRecord) else str(start.path)
        replaced = start.num_classes != num_classes
        log(
            f"loaded weights from {source} (padding {spec.padding}, BN eps {spec.norm_eps:g})"
            + (f"; new classifier for {num_classes} classes" if replaced else "")
        )
    if start is None and cfg.depthwise_init == "pytorch":
        pytorch_depthwise_init(model)
    zero = cfg.zero_init_classifier if cfg.zero_init_classifier is not None else start is not None
    if zero and replaced:
        zero_classifier(model)
    if cfg.memory_efficient_act:
        use_memory_efficient_activations(model)
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model


def pytorch_depthwise_init(model: nn.Module) -> None:
    """Scale the freshly drawn depthwise convs to std sqrt(2 / (k*k*C)), PyTorch's fan-out of a [C, 1, k, k]
    weight: the same draw, 1/sqrt(C) of the reference's k*k (a recipe choice; measured in docs/training.md)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.out_channels:
            with torch.no_grad():
                module.weight.mul_(module.out_channels**-0.5)
