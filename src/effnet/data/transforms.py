"""Train and eval preprocessing presets (torchvision transforms v2), following the EfficientNet recipe."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2  # type: ignore[import-untyped]
from torchvision.transforms.v2 import InterpolationMode  # type: ignore[import-untyped]

from effnet.data.autoaugment import TFAutoAugment, TFRandAugment
from effnet.data.tf_image import resize_bicubic_legacy, resize_bilinear_half_pixel, tf_center_crop_window
from effnet.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

_INTERPOLATIONS = {
    "bicubic": InterpolationMode.BICUBIC,
    "bilinear": InterpolationMode.BILINEAR,
    "nearest": InterpolationMode.NEAREST,
}
# randaugment / autoaugment: the TF reference's RandAugment and policy_v0 (effnet.data.autoaugment);
# the _tv names: torchvision's RandAugment (on the paper's magnitude scale) and its ImageNet AutoAugment policy.
AUGMENTS = ("randaugment", "autoaugment", "randaugment_tv", "autoaugment_tv")


def interpolation_mode(name: str) -> InterpolationMode:
    """torchvision's interpolation enum for a name (bicubic, bilinear, nearest)."""
    if name not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}, got {name!r}")
    return _INTERPOLATIONS[name]


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
    steps += _to_normalized_tensor(mean, std)
    if re_prob > 0:
        # Per-pixel random values, as in the reference random erasing, not a flat grey box.
        steps.append(v2.RandomErasing(p=re_prob, value="random"))
    return v2.Compose(steps)


def eval_transform(
    size: int,
    crop_pct: float,
    interpolation: str = "bicubic",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """Eval preprocessing: resize the shorter side to round(size / crop_pct), center crop size, normalize."""
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    resize = int(round(size / crop_pct))
    return v2.Compose(
        [
            v2.Resize(resize, interpolation=interpolation_mode(interpolation), antialias=True),
            v2.CenterCrop(size),
            *_to_normalized_tensor(mean, std),
        ]
    )


def _to_normalized_tensor(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ]


def normalize(mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """PIL image -> float tensor in [0, 1] -> normalized with mean/std."""
    return v2.Compose(_to_normalized_tensor(mean, std))


def preprocess_transform(preprocess: Preprocess) -> v2.Compose:
    """A model's own eval preprocessing: `eval_transform`'s resize + center crop, or the whole image squashed to
    input_size x input_size when the weights were evaluated that way (resize_mode "squash")."""
    if preprocess.resize_mode == "crop":
        return eval_transform(
            preprocess.input_size, preprocess.crop_pct, preprocess.interpolation, preprocess.mean, preprocess.std
        )
    if preprocess.resize_mode == "squash":
        size = preprocess.input_size
        resize = v2.Resize([size, size], interpolation=interpolation_mode(preprocess.interpolation), antialias=True)
        return v2.Compose([resize, *_to_normalized_tensor(preprocess.mean, preprocess.std)])
    if preprocess.resize_mode == "tf":
        return v2.Compose(
            [TFEvalResize(preprocess), v2.Normalize(mean=list(preprocess.mean), std=list(preprocess.std))]
        )
    raise ValueError(f'resize_mode must be "crop", "squash" or "tf", got {preprocess.resize_mode!r}')


class TFEvalResize:
    """PIL image -> (3, size, size) float tensor in [0, 1] (unclipped) the TF reference's way (resize_mode "tf").

    The window int(crop_pct * shorter side) is cut from the image and resized without antialias: TF1's legacy
    resize_bicubic (tensorflow/tpu: V1, Lite, V2-B0..B3), or for "bilinear" automl V2's half-pixel resize. With
    `full_view` the whole image is resized instead, shorter side to resize_size (what a CAM covers).
    """

    def __init__(self, preprocess: Preprocess, full_view: bool = False):
        if preprocess.interpolation not in ("bicubic", "bilinear"):
            raise ValueError(f'resize_mode "tf" resizes bicubic or bilinear, got {preprocess.interpolation!r}')
        self.preprocess = preprocess
        self.full_view = full_view

    def __call__(self, image: Image.Image) -> torch.Tensor:
        pre = self.preprocess
        pixels = np.asarray(image.convert("RGB"))
        height, width = pixels.shape[:2]
        bicubic = pre.interpolation == "bicubic"
        if self.full_view:
            scale = pre.resize_size / min(height, width)
            out = (max(1, int(height * scale)), max(1, int(width * scale)))  # truncated, as torchvision's Resize
        else:
            # The references' padding: size / (size + padding) is the crop fraction (32 -> 0.875 at 224).
            padding = pre.resize_size - pre.input_size
            top, left, side = tf_center_crop_window(
                height, width, pre.input_size, crop_padding=padding, centre="tpu" if bicubic else "v2"
            )
            pixels, out = pixels[top : top + side, left : left + side], (pre.input_size, pre.input_size)
        resize = resize_bicubic_legacy if bicubic else resize_bilinear_half_pixel
        return torch.from_numpy(resize(pixels, *out)).permute(2, 0, 1).contiguous() / 255.0


def full_view_transform(preprocess: Preprocess) -> v2.Compose:
    """The eval preprocessing without its centre crop: the whole image at the scale the crop shows it (what a class
    activation map covers); a squash already shows the whole image."""
    if preprocess.resize_mode == "squash":
        return preprocess_transform(preprocess)
    if preprocess.resize_mode == "tf":
        normalize = v2.Normalize(mean=list(preprocess.mean), std=list(preprocess.std))
        return v2.Compose([TFEvalResize(preprocess, full_view=True), normalize])
    mode = interpolation_mode(preprocess.interpolation)
    resize = v2.Resize(preprocess.resize_size, interpolation=mode, antialias=True)
    return v2.Compose([resize, *_to_normalized_tensor(preprocess.mean, preprocess.std)])
