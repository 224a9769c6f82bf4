"""Transfer learning: load any weights effnet reads into a model with a new classifier, and backbone freezing."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from effnet.specs import NetSpec
from effnet.train.checkpoint import CHECKPOINT_FORMAT


def read_any_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], NetSpec | None]:
    """Tensors and (when recorded) spec from an `effnet train` checkpoint or any file effnet.weights reads."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights file {path} does not exist")
    if path.suffix in (".pt", ".pth"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing here
            raise ValueError(f"cannot read {path} without executing code: {err}") from err
        if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
            return obj["model"], NetSpec.from_dict(obj["spec"])
    from effnet.weights import read_weights

    return read_weights(path)


def load_pretrained(model: nn.Module, path: str | Path) -> bool:
    """Copy every backbone tensor from `path` into `model`; the classifier too when its shape fits.

    Returns True when the classifier was left freshly initialised (a different number of classes).
    A backbone that does not match is an error, never a silent partial load.
    """
    from effnet.weights import detect_layout, load_state_dict, rename_to_effnet

    state, _ = read_any_weights(path)
    layout = detect_layout(set(state))
    names = rename_to_effnet(model, layout)
    own = model.state_dict()
    head = {ours for ours in names if ours.startswith("classifier.")}
    replaced = any(names[ours] not in state or state[names[ours]].shape != own[ours].shape for ours in head)
    if replaced:
        state = {key: value for key, value in state.items() if key not in {names[ours] for ours in head}}
    missing = [ours for ours, theirs in names.items() if theirs not in state and ours not in head]
    if missing:
        raise ValueError(
            f"{path} does not hold a full {model.spec.name} backbone: {len(missing)} tensors missing "
            f"(first: {missing[:3]}); pass the model the weights were trained with (--model / spec file)"
        )
    load_state_dict(model, state, source=str(path), strict=False)
    return replaced


def set_backbone_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze (or unfreeze) everything but the classifier; frozen BN layers also stop updating statistics."""
    for name, param in model.named_parameters():
        if not name.startswith("classifier."):
            param.requires_grad_(not frozen)
    model.backbone_frozen = frozen  # type: ignore[assignment]


def apply_train_mode(model: nn.Module) -> None:
    """model.train(), but BatchNorm layers of a frozen backbone stay in eval mode (fixed statistics)."""
    model.train()
    if getattr(model, "backbone_frozen", False):
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
