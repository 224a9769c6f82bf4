"""The model the model-source flags (`effnet.commands._flags.add_model_flags`) describe, and its class names,
through the library's one resolution (`effnet.weights.ModelSource` and `load_source`): predict, cam, export and
serve. Imported by the commands' run functions only (it imports torch)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from effnet.commands._flags import preprocess_overrides, with_tag
from effnet.deploy.runtimes import open_exported
from effnet.models.net import EfficientNet
from effnet.weights.source import ModelSource, check_one_source, load_source


def source_from_flags(args: argparse.Namespace, name: str | None, weights: Path | None) -> ModelSource:
    """--model / --pretrained [TAG] / --weights / --classes-file / --padding / --norm-eps and the preprocessing
    flags as one ModelSource."""
    model, pretrained = with_tag(name, args.pretrained)
    classes = getattr(args, "classes_file", None)
    return ModelSource(
        model=model,
        pretrained=pretrained,
        weights=str(weights) if weights is not None else None,
        classes_file=str(classes) if classes else None,
        padding=args.padding,
        norm_eps=args.norm_eps,
        preprocess=tuple(preprocess_overrides(args).items()),
    )


def load_from_flags(args: argparse.Namespace, name: str | None, weights: Path | None, need_weights: bool) -> Any:
    """The model the flags describe, with the preprocessing and class names its weights carry (an exported .onnx
    or OpenVINO .xml comes back as an `effnet.deploy.runtimes.ExportedModel`, which computes logits only)."""
    source = source_from_flags(args, name, weights)
    if source.is_exported:  # runs on its runtime, with the preprocessing and class names it records
        check_one_source(source.pretrained, source.weights)  # no record's preprocessing to lend on the CLI
        model = open_exported(source.weights, source.model)  # type: ignore[arg-type]
        model.preprocess = source.apply_preprocess(model.preprocess)
    else:
        model = load_source(source, random_ok=not need_weights)
    _check_finite(model, weights)
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
    classes = getattr(args, "classes_file", None)
    source = ModelSource(classes_file=str(classes) if classes else None)
    return source.class_names(model.num_classes, getattr(model, "class_names", None))
