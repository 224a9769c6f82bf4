"""Transfer learning: the weights a run starts from, a zeroed new classifier, the step floor, backbone freezing.

Weights load through the one loader (`effnet.weights.load_model`), which brings their padding, BN eps and
preprocessing along.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from effnet.weights import ModelSource, WeightFile
from effnet.weights.pretrained import PretrainedRecord


def starting_weights(
    pretrained: bool | str, weights: str | None, model: str | Path
) -> WeightFile | PretrainedRecord | None:
    """What `TrainConfig.pretrained` / `.weights` point at, resolved as every command resolves its flags
    (`effnet.weights.ModelSource`): the model's pretrained record (its default one, or the tag given) or the
    weight file read once; None to start from scratch."""
    return ModelSource(model=str(model), pretrained=pretrained, weights=weights).starting_weights()


def step_floor_batch_size(batch_size: int, num_images: int, epochs: int, min_steps: int, world_size: int = 1,
                          smallest: int = 8) -> int:
    """`batch_size`, halved (not below `smallest`) until `epochs` epochs of `num_images` give `min_steps` steps.

    A few hundred images at batch 64 are a handful of optimizer steps; a pretrained network needs more updates
    than that to adapt, whatever the learning rate. Halving keeps the batch a multiple of the process count.
    """
    while min_steps and epochs * (num_images // batch_size) < min_steps:
        half = batch_size // 2
        if half < max(smallest, world_size) or half % world_size:
            break
        batch_size = half
    return batch_size


def zero_classifier(model: nn.Module) -> None:
    """Start a new classifier at zero: logits 0, loss ln(num_classes), no large early gradients into the backbone.

    The TF init, uniform(+-1/sqrt(num_classes)), is +-0.71 for two classes: on pretrained features (1280 values of
    order 1) that gives large logits and a starting loss far above ln 2, and the head's large gradients wreck the
    backbone in the first steps.
    """
    if isinstance(model.classifier, nn.Linear):
        nn.init.zeros_(model.classifier.weight)
        nn.init.zeros_(model.classifier.bias)


def set_backbone_frozen(model: nn.Module, frozen: bool, frozen_stages: int = 0) -> None:
    """Freeze everything but the classifier (`frozen`, or `frozen_stages=-1`), else the stem and the first
    `frozen_stages` stages. Frozen BatchNorm layers also keep their statistics (see `apply_train_mode`)."""
    if not -1 <= frozen_stages <= len(model.stages):
        raise ValueError(f"frozen_stages must be -1 (whole backbone) or in [0, {len(model.stages)}], got "
                         f"{frozen_stages}")
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
