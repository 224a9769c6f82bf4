"""How images are prepared for a model: the eval-time resize, crop and normalization it expects.

A `Preprocess` travels with the weights: effnet's weight files, training checkpoints and ONNX exports record it,
pretrained records carry it, and models expose it (also as a timm-style `pretrained_cfg`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from effnet.models.specs import NetSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The TF Lite builder's (x - 127) / 128 on 0-255 pixels ("inception-style, for better post-quantization"),
# written as mean/std of [0, 1] pixels.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
RESIZE_MODES = ("crop", "squash", "tf")


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
    # without antialias (legacy resize_bicubic; bilinear: automl V2's half-pixel resize), effnet.data.tf_image
    resize_mode: str = "crop"

    def __post_init__(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")

    @property
    def resize_size(self) -> int:
        """Shorter side before the center crop."""
        return int(round(self.input_size / self.crop_pct))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (what weight files, checkpoints and ONNX metadata store)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        """Inverse of `to_dict` (lists from JSON become tuples); unknown keys are an error."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown preprocessing fields {sorted(unknown)}")
        values = dict(data)
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)

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

    def transforms(self):  # -> torchvision.transforms.v2.Compose
        """The eval transform (PIL image -> normalized tensor), like torchvision's `weights.transforms()`."""
        from effnet.data.transforms import preprocess_transform

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
