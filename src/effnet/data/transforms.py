"""Train-time preprocessing (torchvision transforms v2), following the EfficientNet recipe.

The eval transforms live with the record they read, in `effnet.preprocess`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchvision.transforms import v2  # type: ignore[import-untyped]
from torchvision.transforms.v2 import InterpolationMode  # type: ignore[import-untyped]

from effnet.data.autoaugment import TFAutoAugment, TFRandAugment
from effnet.preprocess import IMAGENET_MEAN, IMAGENET_STD, interpolation_mode, normalize

# randaugment / autoaugment: the TF reference's RandAugment and policy_v0 (effnet.data.autoaugment);
# the _tv names: torchvision's RandAugment (on the paper's magnitude scale) and its ImageNet AutoAugment policy.
AUGMENTS = ("randaugment", "autoaugment", "randaugment_tv", "autoaugment_tv")


def _linear(top: float) -> Callable[[int, int, int], torch.Tensor]:
    """Magnitude table whose bin i is the TF reference's level i: top * i / 10, extrapolated past 10."""
    return lambda num_bins, height, width: torch.arange(num_bins, dtype=torch.float32) * (top / 10.0)


class TorchvisionRandAugment(v2.RandAugment):
    """torchvision's RandAugment (its 14 ops with Identity, strength increasing with magnitude, op-specific
    fills) on the paper's magnitude scale: M=10 is full strength and V2's 15-25 extrapolate linearly.

    augment="randaugment_tv". torchvision's own table spreads full strength over 31 bins, so its magnitude 10 is a
    third of the paper's. Photometric factors are kept in [0.05, 1.95] and posterize/solarize clamped so every
    level stays valid. The reference's own RandAugment is `effnet.data.autoaugment.TFRandAugment`.
    """

    _AUGMENTATION_SPACE = {
        "Identity": (lambda num_bins, height, width: None, False),
        "ShearX": (_linear(0.3), True),
        "ShearY": (_linear(0.3), True),
        "TranslateX": (lambda num_bins, height, width: _linear(150.0 / 331.0 * width)(num_bins, 0, 0), True),
        "TranslateY": (lambda num_bins, height, width: _linear(150.0 / 331.0 * height)(num_bins, 0, 0), True),
        "Rotate": (_linear(30.0), True),
        "Brightness": (lambda n, h, w: _linear(0.9)(n, h, w).clamp(max=0.95), True),
        "Color": (lambda n, h, w: _linear(0.9)(n, h, w).clamp(max=0.95), True),
        "Contrast": (lambda n, h, w: _linear(0.9)(n, h, w).clamp(max=0.95), True),
        "Sharpness": (lambda n, h, w: _linear(0.9)(n, h, w).clamp(max=0.95), True),
        "Posterize": (lambda n, h, w: (8 - _linear(4.0)(n, h, w)).round().clamp(min=1).int(), False),
        "Solarize": (lambda n, h, w: (1.0 - _linear(1.0)(n, h, w)).clamp(min=0.0), False),
        "AutoContrast": (lambda num_bins, height, width: None, False),
        "Equalize": (lambda num_bins, height, width: None, False),
    }

    def __init__(self, num_ops: int = 2, magnitude: int = 10, interpolation: InterpolationMode | str = "nearest"):
        if magnitude < 0:
            raise ValueError(f"RandAugment magnitude must be >= 0, got {magnitude}")
        # One bin per integer level from 0 to the magnitude asked for (and at least the reference's 10).
        super().__init__(num_ops, int(magnitude), max(11, int(magnitude) + 1), interpolation)


def train_transform(
    size: int,
    *,
    interpolation: str = "bicubic",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    scale: tuple[float, float] = (0.08, 1.0),
    hflip: float = 0.5,
    augment: str | None = "randaugment",
    magnitude: float = 10,
    num_ops: int = 2,
    re_prob: float = 0.0,
) -> v2.Compose:
    """Training preprocessing: Inception crop, flip, RandAugment/AutoAugment, normalize, random erasing.

    augment: "randaugment" (the TF reference's, `num_ops` ops at `magnitude`), "autoaugment" (its policy_v0),
    "randaugment_tv" / "autoaugment_tv" (torchvision's), or None / "none".
    """
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    if augment == "none":  # the spelling a command line or YAML file gives
        augment = None
    if augment is not None and augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, 'none' or None, got {augment!r}")
    if not 0.0 < scale[0] <= scale[1] <= 1.0:
        raise ValueError(f"scale must be (min, max) area fractions with 0 < min <= max <= 1, got {scale}")
    mode = interpolation_mode(interpolation)
    steps: list[v2.Transform] = [
        v2.RandomResizedCrop(size, scale=scale, ratio=(3 / 4, 4 / 3), interpolation=mode, antialias=True)
    ]
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(hflip))
    if augment == "randaugment" and num_ops > 0:
        steps.append(TFRandAugment(num_ops, magnitude))
    elif augment == "autoaugment":
        steps.append(TFAutoAugment("v0"))
    elif augment == "randaugment_tv" and num_ops > 0:
        steps.append(TorchvisionRandAugment(num_ops, int(round(magnitude)), interpolation=mode))
    elif augment == "autoaugment_tv":
        steps.append(v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET, interpolation=mode))
    steps += normalize(mean, std).transforms
    if re_prob > 0:
        # Per-pixel random values, as in the reference random erasing, not a flat grey box.
        steps.append(v2.RandomErasing(p=re_prob, value="random"))
    return v2.Compose(steps)
