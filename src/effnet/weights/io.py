"""Writing effnet's weight format, and copying a state dict of any supported layout into a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file

from effnet._util.fileio import atomic_write
from effnet.weights.layouts import detect_layout, rename_to_effnet
from effnet.weights.reader import EFFNET_FORMAT
from effnet.weights.twins import find_twin

SAVE_LAYOUTS = ("effnet", "timm", "torchvision")

if TYPE_CHECKING:
    from effnet.models.net import EfficientNet


def _shape_mismatch(
    model: EfficientNet,
    state: dict[str, torch.Tensor],
    own: dict[str, torch.Tensor],
    mismatched: list[tuple[str, str]],
    where: str,
    only_head: bool,
) -> str:
    """The error for tensors of the wrong shape: the first five, and the fix when only the classifier differs."""
    lines = [
        f"{ours} {tuple(own[ours].shape)} <- {theirs} {tuple(state[theirs].shape)}" for ours, theirs in mismatched[:5]
    ]
    hint = ""
    if only_head and all(ours.startswith("classifier.") for ours, _ in mismatched):
        hint = (
            f"\nonly the classifier differs: create the model with num_classes="
            f"{state[mismatched[0][1]].shape[0]}, or pass reset_classifier=True for a fresh one to fine-tune"
        )
    return f"{len(mismatched)} tensor(s){where} do not fit {model.spec.name}; first:\n  " + "\n  ".join(lines) + hint


def load_state_dict(
    model: EfficientNet, state: dict[str, torch.Tensor], *, source: str = "", strict: bool = True
) -> str:
    """Copy `state` (any supported layout) into `model`; returns the detected layout."""
    layout = detect_layout(set(state))
    names = rename_to_effnet(model, layout)
    own = model.state_dict()
    missing = [ours for ours, theirs in names.items() if theirs not in state]
    mismatched = [
        (ours, theirs) for ours, theirs in names.items() if theirs in state and state[theirs].shape != own[ours].shape
    ]
    unexpected = sorted(set(state) - set(names.values()))
    where = f" from {source}" if source else ""
    if mismatched:
        only_head = not (missing or unexpected)
        raise ValueError(_shape_mismatch(model, state, own, mismatched, f"{where} ({layout} layout)", only_head))
    if strict and (missing or unexpected):
        raise ValueError(
            f"weights{where} ({layout} layout) do not match {model.spec.name}: "
            f"{len(missing)} missing (first: {missing[:3]}), {len(unexpected)} unexpected (first: {unexpected[:3]}); "
            "check the model name, or pass strict=False to load what fits"
        )
    # copy_ would cast an int8 (quantized) or bool tensor into a float parameter without a word: refuse it.
    cast = [
        theirs
        for ours, theirs in names.items()
        if theirs in state and own[ours].is_floating_point() and not state[theirs].is_floating_point()
    ]
    if cast:
        raise ValueError(
            f"{len(cast)} tensor(s){where} are {state[cast[0]].dtype} where the model has float weights (first: "
            f"{cast[0]}); effnet loads float weights (a quantized model is made with `effnet export --int8`)"
        )
    with torch.no_grad():
        for ours, theirs in names.items():
            if theirs in state:
                own[ours].copy_(state[theirs])
    return layout


def save_weights(model: EfficientNet, path: str | Path, layout: str = "effnet", *, exact: bool = True) -> Path:
    """Write a safetensors file atomically: the tensors under `layout`'s key names, spec / classes / preprocessing
    as metadata (which timm and torchvision ignore, and effnet reads back whatever the layout).

    `layout="timm"` / `"torchvision"` writes the state dict of the model's twin there (see `find_twin`), which
    loads with `strict=True`; a model without a twin is refused. `exact=False` allows a torchvision twin whose
    padding or BN eps differs from the model's.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"effnet weight files end in .safetensors, got {path.name}")
    if layout not in SAVE_LAYOUTS:
        raise ValueError(f"layout must be one of {SAVE_LAYOUTS}, got {layout!r}")
    state = {key: value.detach().contiguous().cpu() for key, value in model.state_dict().items()}
    metadata = {
        "format": EFFNET_FORMAT,
        "layout": layout,
        "spec": json.dumps(model.spec.to_dict()),
        "num_classes": str(model.num_classes),
        "preprocess": json.dumps(model.preprocess.to_dict()),
    }
    if layout != "effnet":
        twin = find_twin(model, layout, exact=exact)
        names = rename_to_effnet(model, layout)
        state = {names[key]: value for key, value in state.items()}
        metadata["twin"] = twin.describe(model.num_classes)
    if model.class_names:
        metadata["class_names"] = json.dumps(list(model.class_names))
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata))
    return path
