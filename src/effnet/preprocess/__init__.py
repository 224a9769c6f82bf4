"""How images are prepared for a model: the eval-time resize, crop and normalization it expects.

A `Preprocess` travels with the weights: effnet's weight files, training checkpoints and ONNX exports record it,
pretrained records carry it, and models expose it (also as a timm-style `pretrained_cfg`). Every eval transform
is built here from it (predict, CAM, serve, evaluation); the train-time ones are in `effnet.data.transforms`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from effnet._util.validation import (
    MAX_SIDE,
    check_field_types,
    check_range,
    fraction,
    pixel_std,
    probability,
    whole_number,
)
from effnet.preprocess.tf_image import resize_bicubic_legacy, resize_bilinear_half_pixel, tf_center_crop_window

if TYPE_CHECKING:  # names for annotations only: the record needs no model code, reading a spec needs no import
    from PIL import Image
    from torchvision.transforms import v2  # type: ignore[import-untyped]

    from effnet.models.specs import NetSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The TF Lite builder's (x - 127) / 128 on 0-255 pixels ("inception-style, for better post-quantization"),
# written as mean/std of [0, 1] pixels.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
RESIZE_MODES = ("crop", "squash", "tf")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
_INPUT_SIDE = whole_number(1, MAX_SIDE)


@dataclass(frozen=True)
class Preprocess:
    """How images must be prepared for a model: resize to input_size / crop_pct, center crop, normalize."""

    input_size: int
    crop_pct: float
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # "crop": shorter side to resize_size, then center crop; "squash": whole image to input_size x input_size;
    # "tf": the TF reference's eval itself, the window crop_pct x shorter side cut from the image, then resized
    # without antialias (legacy resize_bicubic; bilinear: automl V2's half-pixel resize), effnet.preprocess.tf_image
    resize_mode: str = "crop"

    def __post_init__(self) -> None:
        # Every Preprocess is usable, wherever its values come from (flags, a weight file's or an ONNX file's
        # metadata, Python): the ranges are the flags' own (effnet._util.validation), checked by type first.
        check_field_types(self)
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        check_range(self.input_size, "input_size", _INPUT_SIDE)
        check_range(self.crop_pct, "crop_pct", fraction)
        for channel in range(3):
            check_range(self.mean[channel], "mean", probability)
            check_range(self.std[channel], "std", pixel_std)

    @property
    def resize_size(self) -> int:
        """Shorter side before the center crop."""
        return int(round(self.input_size / self.crop_pct))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (what weight files, checkpoints and ONNX metadata store)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        """Inverse of `to_dict` (lists from JSON become tuples); unknown or missing keys and wrong types or ranges
        are a ValueError naming them."""
        if not isinstance(data, dict):
            raise ValueError(f"preprocessing must be a mapping of {[f.name for f in fields(cls)]}, got {data!r:.60}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names, key=str)
        if unknown:
            raise ValueError(f"unknown preprocessing fields {unknown[:5]}; expected some of {sorted(names)}")
        missing = [name for name in ("input_size", "crop_pct") if name not in data]
        if missing:
            raise ValueError(f"preprocessing without {missing}")
        return cls(**data)  # __post_init__ checks types (lists of 3 numbers become tuples) and ranges

    def timm_cfg(self) -> dict[str, Any]:
        """The same preprocessing as timm's data-config keys, so timm's transforms reproduce it exactly."""
        # effnet's "squash" resizes the whole image to input_size: timm's "squash" crop mode with crop_pct 1.
        # "tf" has no timm twin: timm's centre crop of the same geometry is the closest.
        squash = self.resize_mode == "squash"
        return {
            "input_size": (3, self.input_size, self.input_size),
            "interpolation": self.interpolation,
            "mean": tuple(self.mean),
            "std": tuple(self.std),
            "crop_pct": 1.0 if squash else self.crop_pct,
            "crop_mode": "squash" if squash else "center",
        }

    def transforms(self) -> v2.Compose:
        """The eval transform (PIL image -> normalized tensor), like torchvision's `weights.transforms()`."""
        return preprocess_transform(self)

    def describe(self) -> str:
        """A short readable form, e.g. `224 crop 0.875 bicubic, mean/std 0.5`."""
        resize = "squash" if self.resize_mode == "squash" else f"{self.resize_mode} {self.crop_pct:.3g}"
        if self.mean == IMAGENET_MEAN and self.std == IMAGENET_STD:
            norm = "ImageNet mean/std"
        elif set(self.mean) == {0.5} and set(self.std) == {0.5}:
            norm = "[-1, 1]"
        elif self.mean == LITE_MEAN and self.std == LITE_STD:
            norm = "(x-127)/128"
        else:
            norm = f"mean {self.mean} std {self.std}"
        return f"{self.input_size} {resize} {self.interpolation}, {norm}"


V2_CROP_BELOW = 320  # automl efficientnetv2 preprocessing.preprocess_for_eval: centre crop only below 320 px


def uses_v2_preprocessing(spec: NetSpec) -> bool:
    """Whether the spec is trained and evaluated with automl's EfficientNetV2 preprocessing: V2-S/M/L/XL and
    other fused-block specs. V2-B0..B3 (names efficientnetv2_b*) use the V1 path ('effnetv1_autoaug')."""
    return spec.is_v2 and not spec.name.startswith("efficientnetv2_b")


def tf_crop_pct(size: int) -> float:
    """The TF reference's eval crop fraction at `size`: the shorter side goes to size + 32, then a centre crop."""
    return size / (size + 32)


def tpu_crop_pct(size: int) -> float:
    """tensorflow/tpu's eval crop fraction since 2021: CROP_PADDING = round(size / 7) (32 at 224, 37 at 260)."""
    return size / (size + round(size / 7))


def default_preprocess(spec: NetSpec, size: int | None = None) -> Preprocess:
    """The reference's eval protocol for the spec's family at `size` (default: its native resolution).

    V1, Lite, V2-B0..B3 (tensorflow/tpu): bicubic, shorter side to size + 32, centre crop, ImageNet mean/std; Lite
    with the TF Lite builder's (x - 127) / 128 instead. V2-S/M/L/XL (automl preprocess_for_eval): bilinear,
    (x - 128) / 128 (mean = std = 0.5 here); below 320 px the same centre crop, from 320 px the whole image resized
    to size x size (no crop). `replace(..., resize_mode="tf")` gives TF's own crop window and resize.
    """
    size = size or spec.resolution
    crop_pct = tf_crop_pct(size)
    if spec.name.startswith("efficientnet_lite"):
        return Preprocess(size, crop_pct, "bicubic", LITE_MEAN, LITE_STD)
    if not uses_v2_preprocessing(spec):
        return Preprocess(size, crop_pct)
    half = (0.5, 0.5, 0.5)
    if size < V2_CROP_BELOW:
        return Preprocess(size, crop_pct, "bilinear", half, half)
    return Preprocess(size, 1.0, "bilinear", half, half, resize_mode="squash")


def _v2():  # -> the torchvision.transforms.v2 module
    """torchvision's transforms, imported when a transform is first built: importing them with `import effnet`
    would about double its time, and models, weights and the scaling engine need none."""
    from torchvision.transforms import v2  # type: ignore[import-untyped]

    return v2


def interpolation_mode(name: str) -> v2.InterpolationMode:
    """torchvision's interpolation enum for a name (bicubic, bilinear, nearest)."""
    if name not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {name!r}")
    return getattr(_v2().InterpolationMode, name.upper())


def eval_transform(
    size: int,
    crop_pct: float,
    interpolation: str = "bicubic",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """Eval preprocessing: resize the shorter side to round(size / crop_pct), center crop size, normalize."""
    v2 = _v2()
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
    v2 = _v2()
    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ]


def normalize(mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """PIL image -> float tensor in [0, 1] -> normalized with mean/std."""
    return _v2().Compose(_to_normalized_tensor(mean, std))


def preprocess_transform(preprocess: Preprocess) -> v2.Compose:
    """A model's own eval preprocessing: `eval_transform`'s resize + center crop, or the whole image squashed to
    input_size x input_size when the weights were evaluated that way (resize_mode "squash")."""
    v2 = _v2()
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
    v2 = _v2()
    if preprocess.resize_mode == "squash":
        return preprocess_transform(preprocess)
    if preprocess.resize_mode == "tf":
        normalize = v2.Normalize(mean=list(preprocess.mean), std=list(preprocess.std))
        return v2.Compose([TFEvalResize(preprocess, full_view=True), normalize])
    mode = interpolation_mode(preprocess.interpolation)
    resize = v2.Resize(preprocess.resize_size, interpolation=mode, antialias=True)
    return v2.Compose([resize, *_to_normalized_tensor(preprocess.mean, preprocess.std)])
