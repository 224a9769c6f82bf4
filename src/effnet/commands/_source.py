"""The model the model-source flags (`effnet.commands._flags.add_model_flags`) describe, and its class names: one
place for predict, cam and export. Imported by the commands' run functions only (it imports torch)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from effnet._util.filecheck import read_class_list
from effnet.commands._flags import DEFAULT_MODEL, preprocess_overrides, with_tag
from effnet.deploy.runtimes import is_exported, open_exported
from effnet.models.net import EfficientNet
from effnet.models.registry import create_model
from effnet.weights import load_model


def load_from_flags(args: argparse.Namespace, name: str | None, weights: Path | None, need_weights: bool) -> Any:
    """The model the flags describe, with the preprocessing and class names its weights carry (an exported .onnx
    or OpenVINO .xml comes back as an `effnet.deploy.runtimes.ExportedModel`, which computes logits only)."""
    name, pretrained = with_tag(name, args.pretrained)
    if pretrained and weights is not None:
        raise ValueError("give either --pretrained or --weights, not both")
    if pretrained:
        model = create_model(name or DEFAULT_MODEL, pretrained=True)
    elif is_exported(weights):  # an ONNX / OpenVINO file effnet exported: its recorded preprocessing and classes
        model = open_exported(weights, name)  # type: ignore[arg-type]
    elif weights is not None:
        model = load_model(weights, name, padding=args.padding, norm_eps=args.norm_eps)
    elif need_weights:
        raise ValueError(
            f"{name or DEFAULT_MODEL} has random weights: pass --pretrained (see `effnet models --pretrained`) or "
            "--weights FILE"
        )
    else:
        model = create_model(name or DEFAULT_MODEL, padding=args.padding, norm_eps=args.norm_eps)
    overrides = preprocess_overrides(args)
    if overrides:
        model.preprocess = replace(model.preprocess, **overrides)
    _check_finite(model, weights)
    if "crop_pct" in overrides and model.preprocess.resize_mode == "squash":
        raise ValueError(
            "--crop-pct would be ignored: squash mode resizes the whole image to --input-size without a crop; "
            "pass --resize-mode crop with it, or drop --crop-pct"
        )
    return model.eval()


def _check_finite(model: Any, weights: Path | None) -> None:
    """Refuse weights holding NaN or inf: every output would be NaN, printed as if it were a prediction."""
    import torch

    state = model.state_dict() if isinstance(model, torch.nn.Module) else {}
    bad = next(
        (name for name, value in state.items() if value.is_floating_point() and not value.isfinite().all()), None
    )
    if bad is not None:
        raise ValueError(
            f"{weights or 'the model'} holds non-finite weights (NaN or inf, first in {bad}), so every output would "
            "be NaN; use a checkpoint from before the run diverged"
        )


def class_names(args: argparse.Namespace, model: EfficientNet) -> list[str] | None:
    """--classes-file, else the names the weights carry, else ImageNet-1k's for 1000 outputs."""
    from effnet.weights.pretrained import imagenet_classes

    num_classes = model.num_classes
    if getattr(args, "classes_file", None):
        return read_class_list(args.classes_file, num_classes)  # UTF-8, printable, one name per class
    if getattr(model, "class_names", None) and len(model.class_names) == num_classes:
        return list(model.class_names)
    return list(imagenet_classes()) if num_classes == 1000 else None
