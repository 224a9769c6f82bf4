"""Transfer learning's start: the weights a run starts from, a zeroed new classifier, the step floor (backbone
freezing, which every run applies, is `effnet.train.freezing`).

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


def step_floor_batch_size(
    batch_size: int, num_images: int, epochs: int, min_steps: int, world_size: int = 1, smallest: int = 8
) -> int:
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
