"""How images are prepared for a model: the eval-time resize, crop and normalization it expects."""

from __future__ import annotations

from dataclasses import dataclass

from effnet.specs import NetSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How images must be prepared for a model: resize to input_size / crop_pct, center crop, normalize."""

    input_size: int
    crop_pct: float
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # "crop": shorter side to resize_size, then center crop; "squash": whole image to input_size x input_size.
    resize_mode: str = "crop"

    @property
    def resize_size(self) -> int:
        """Shorter side before the center crop."""
        return int(round(self.input_size / self.crop_pct))


def default_preprocess(spec: NetSpec) -> Preprocess:
    """TF reference eval protocol: crop fraction res / (res + 32), bicubic, ImageNet mean/std."""
    return Preprocess(spec.resolution, spec.resolution / (spec.resolution + 32))
