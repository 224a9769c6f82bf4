"""Reading and writing weight files: effnet's safetensors format and foreign PyTorch checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from effnet.fileio import atomic_write
from effnet.specs import NetSpec
from effnet.weights.layouts import detect_layout, rename_to_effnet

if TYPE_CHECKING:
    from effnet.net import EfficientNet

FORMAT_TAG = "effnet"
_WRAPPER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model", "ema")
_WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint (`{"state_dict": ...}`, DDP's `module.` prefixes, ...)."""
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                return _unwrap(obj[key], path)
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    state = dict(obj)
    for prefix in _WRAPPER_PREFIXES:
        if all(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], NetSpec | None]:
    """Load a weight file without executing code; returns the tensors and, for effnet files, the saved spec."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weight file {path} does not exist")
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        spec = None
        if metadata.get("format") == FORMAT_TAG and "spec" in metadata:
            spec = NetSpec.from_dict(json.loads(metadata["spec"]))
        return state, spec
    try:
        # weights_only: tensors and plain containers only; a pickle that would run code is refused.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise ValueError(f"cannot read {path} as a PyTorch state dict without executing code: {err}") from err
    return _unwrap(obj, path), None


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
        lines = [f"{ours} {tuple(own[ours].shape)} <- {theirs} {tuple(state[theirs].shape)}" for ours, theirs in
                 mismatched[:5]]
        hint = ""
        if all(ours.startswith("classifier.") for ours, _ in mismatched):
            hint = (f"\nonly the classifier differs: create the model with num_classes="
                    f"{state[mismatched[0][1]].shape[0]} and call model.reset_classifier(n) to fine-tune")
        raise ValueError(
            f"{len(mismatched)} tensor(s){where} ({layout} layout) do not fit {model.spec.name}; first:\n  "
            + "\n  ".join(lines) + hint
        )
    if strict and (missing or unexpected):
        raise ValueError(
            f"weights{where} ({layout} layout) do not match {model.spec.name}: "
            f"{len(missing)} missing (first: {missing[:3]}), {len(unexpected)} unexpected (first: {unexpected[:3]}); "
            "check the model name, or pass strict=False to load what fits"
        )
    with torch.no_grad():
        for ours, theirs in names.items():
            if theirs in state:
                own[ours].copy_(state[theirs])
    return layout


def save_weights(model: EfficientNet, path: str | Path) -> Path:
    """Write effnet's format: safetensors tensors + the spec (padding, BN eps, ...) as metadata, atomically."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"effnet weight files end in .safetensors, got {path.name}")
    state = {key: value.detach().contiguous().cpu() for key, value in model.state_dict().items()}
    metadata = {"format": FORMAT_TAG, "spec": json.dumps(model.spec.to_dict()), "num_classes": str(model.num_classes)}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata))
    return path


def load_model(path: str | Path) -> EfficientNet:
    """Rebuild a model saved by `save_weights` exactly as it was (spec, class count, weights)."""
    from effnet.net import EfficientNet

    state, spec = read_weights(path)
    if spec is None:
        raise ValueError(f"{path} is not an effnet weight file; use create_model(name, weights=...) instead")
    num_classes = state["classifier.weight"].shape[0] if "classifier.weight" in state else 0
    model = EfficientNet(spec, num_classes=num_classes)
    load_state_dict(model, state, source=str(path))
    return model
