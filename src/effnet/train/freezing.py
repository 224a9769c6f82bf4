"""Backbone freezing, applied by every training run: which parameters train, and frozen BatchNorm layers that keep
their statistics in train mode."""

from __future__ import annotations

from torch import nn


def set_backbone_frozen(model: nn.Module, frozen: bool, frozen_stages: int = 0) -> None:
    """Freeze everything but the classifier (`frozen`, or `frozen_stages=-1`), else the stem and the first
    `frozen_stages` stages. Frozen BatchNorm layers also keep their statistics (see `apply_train_mode`)."""
    if not -1 <= frozen_stages <= len(model.stages):
        raise ValueError(
            f"frozen_stages must be -1 (whole backbone) or in [0, {len(model.stages)}], got {frozen_stages}"
        )
    frozen = frozen or frozen_stages == -1
    always = [model.stem, *model.stages[:frozen_stages]] if frozen_stages > 0 else []
    fixed = {id(param) for module in always for param in module.parameters()}
    for name, param in model.named_parameters():
        if not name.startswith("classifier."):
            param.requires_grad_(not frozen and id(param) not in fixed)


def apply_train_mode(model: nn.Module) -> None:
    """model.train(), but BatchNorm layers whose parameters are frozen stay in eval mode (fixed statistics)."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.weight is not None:
            if not module.weight.requires_grad:
                module.eval()
