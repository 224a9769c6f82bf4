"""timm's Hub `config.json` (architecture, num_classes, model_args, pretrained_cfg) from an effnet model, and back.

timm reads a folder's `config.json` to know what to build (`architecture` + `model_args`) and how to feed it
(`pretrained_cfg`: input size, interpolation, crop, mean / std); effnet writes those keys beside its own spec so
`timm.create_model("local-dir:FOLDER", pretrained=True)` works, and reads them to load folders timm wrote.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from effnet.models.catalog import get_spec
from effnet.models.specs import NetSpec
from effnet.preprocess import Preprocess
from effnet.weights.twins import effnet_settings_of_timm, find_twin

if TYPE_CHECKING:
    from effnet.models.net import EfficientNet


def timm_config(model: EfficientNet) -> dict[str, Any]:
    """The keys timm's `save_for_hf` writes, for the timm twin of `model` (ValueError when it has none)."""
    twin = find_twin(model, "timm")
    size = model.preprocess.input_size
    pretrained_cfg = {
        **model.preprocess.timm_cfg(),
        "input_size": [model.spec.in_channels, size, size],
        "fixed_input_size": False,
        "num_classes": model.num_classes,
        "pool_size": [-(-size // 32)] * 2,  # the head's map at the input size (ceil: stride-2 convs round up)
        "first_conv": "conv_stem",
        "classifier": "classifier",
    }
    config: dict[str, Any] = {
        "architecture": twin.name,
        "num_classes": model.num_classes,
        "num_features": model.num_features,
        "global_pool": model.global_pool,
        "model_args": {**twin.model_args, "num_classes": model.num_classes, "in_chans": model.spec.in_channels},
        "pretrained_cfg": pretrained_cfg,
    }
    if model.class_names is not None:
        config["label_names"] = list(model.class_names)
    return config


def preprocess_from_timm(cfg: dict[str, Any]) -> Preprocess:
    """effnet's preprocessing for a timm `pretrained_cfg` (center crop, or the whole image squashed)."""
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    crop_pct = float(cfg.get("crop_pct", 0.875))
    squash = cfg.get("crop_mode") == "squash" and crop_pct == 1.0  # effnet's squash: timm_cfg's inverse
    return Preprocess(
        size,
        crop_pct,
        cfg.get("interpolation", "bicubic"),
        tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),  # type: ignore[arg-type]
        tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))),  # type: ignore[arg-type]
        resize_mode="squash" if squash else "crop",
    )


def from_timm_config(config: dict[str, Any]) -> tuple[NetSpec, int, Preprocess, tuple[str, ...] | None]:
    """(spec, num_classes, preprocessing, class names) of a folder timm wrote; ValueError for a non-EfficientNet."""
    if "architecture" not in config:
        raise ValueError("config.json names no architecture: neither an effnet nor a timm folder")
    model_args = dict(config.get("model_args") or {})
    name, padding, eps = effnet_settings_of_timm(config["architecture"], model_args)
    pretrained_cfg = config.get("pretrained_cfg") or {}
    num_classes = int(config.get("num_classes", pretrained_cfg.get("num_classes", 1000)))
    in_chans = int(model_args.get("in_chans", 3))
    spec = get_spec(name).replace(padding=padding, norm_eps=eps, in_channels=in_chans)
    labels = config.get("label_names", pretrained_cfg.get("label_names"))
    names = tuple(labels) if isinstance(labels, list) and len(labels) == num_classes else None
    return spec, num_classes, preprocess_from_timm(pretrained_cfg), names
