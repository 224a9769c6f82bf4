"""Transfer learning: backbone freezing (weights load through `effnet.weights.load_model`)."""

from __future__ import annotations

from torch import nn


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
