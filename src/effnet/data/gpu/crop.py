"""Batched crops, flips and normalization: the tensor twins of the CPU train / eval transforms' geometry.

Images may differ in size (decoded photos): they come as a list of uint8 [3, H, W] tensors on any device and leave
as one uint8 batch [N, 3, S, S]. Boxes are drawn on the CPU from torch's global generator with the distribution
of torchvision's RandomResizedCrop (the CPU training transform); each image is then resized on its own device by
torchvision's tensor kernel, which agrees with the CPU path's PIL resize to within a level or two on most pixels
(see tests/test_gpu_pipeline.py for the measured tolerance).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision.transforms.v2 import functional as TF  # type: ignore[import-untyped]

from effnet.preprocess import interpolation_mode

_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 boxes before its central fallback


def sample_crop_boxes(
    sizes: Sequence[tuple[int, int]],
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """RandomResizedCrop's boxes for images of (height, width) `sizes`: int64 [N, 4] as (top, left, h, w).

    Per image: up to 10 tries of area ~ U(scale) x image area and log aspect ~ U(log ratio), the first box that
    fits wins; none fits -> the central crop at the nearest allowed aspect (torchvision's fallback).
    """
    count = len(sizes)
    if count == 0:
        return torch.zeros(0, 4, dtype=torch.int64)
    heights = torch.tensor([h for h, _ in sizes], dtype=torch.float64).view(-1, 1)
    widths = torch.tensor([w for _, w in sizes], dtype=torch.float64).view(-1, 1)
    area = heights * widths * torch.empty(count, _ATTEMPTS, dtype=torch.float64).uniform_(scale[0], scale[1])
    log_ratio = torch.empty(count, _ATTEMPTS, dtype=torch.float64).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_ratio)
    box_w = torch.round(torch.sqrt(area * aspect))
    box_h = torch.round(torch.sqrt(area / aspect))
    fits = (box_w > 0) & (box_w <= widths) & (box_h > 0) & (box_h <= heights)
    found = fits.any(dim=1)
    first = fits.to(torch.int64).argmax(dim=1, keepdim=True)  # the first box that fits
    h, w = box_h.gather(1, first).squeeze(1), box_w.gather(1, first).squeeze(1)
    heights, widths = heights.squeeze(1), widths.squeeze(1)
    offsets = torch.rand(count, 2, dtype=torch.float64)
    top = (offsets[:, 0] * (heights - h + 1)).floor()  # uniform over 0..height - h, as torch.randint
    left = (offsets[:, 1] * (widths - w + 1)).floor()
    # No box fits in 10 tries: the central crop at the nearest allowed aspect (torchvision's fallback).
    fallback = torch.tensor([_central_fallback(height, width, ratio) for height, width in sizes], dtype=torch.float64)
    h, w = torch.where(found, h, fallback[:, 0]), torch.where(found, w, fallback[:, 1])
    top = torch.where(found, top, torch.div(heights - h, 2, rounding_mode="floor"))
    left = torch.where(found, left, torch.div(widths - w, 2, rounding_mode="floor"))
    return torch.stack([top, left, h, w], dim=1).to(torch.int64)


def _central_fallback(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    in_ratio = width / height
    if in_ratio < min(ratio):
        return int(round(width / min(ratio))), width
    if in_ratio > max(ratio):
        return height, int(round(height * max(ratio)))
    return height, width


def resized_crops(
    images: Sequence[torch.Tensor], boxes: torch.Tensor, size: int, interpolation: str = "bicubic"
) -> torch.Tensor:
    """Crop each uint8 [3, H, W] image to its box and resize it to size x size (antialiased): [N, 3, S, S]."""
    mode = interpolation_mode(interpolation)
    out = [
        TF.resized_crop(image, int(top), int(left), int(h), int(w), [size, size], interpolation=mode, antialias=True)
        for image, (top, left, h, w) in zip(images, boxes.tolist(), strict=True)
    ]
    return torch.stack(out)


def random_resized_crop(
    images: Sequence[torch.Tensor],
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    interpolation: str = "bicubic",
) -> torch.Tensor:
    """RandomResizedCrop for a list of images of any sizes: one batch [N, 3, size, size]."""
    boxes = sample_crop_boxes([(int(image.shape[-2]), int(image.shape[-1])) for image in images], scale)
    return resized_crops(images, boxes, size, interpolation)


def random_hflip(images: torch.Tensor, prob: float = 0.5) -> torch.Tensor:
    """Mirror each image of [N, C, H, W] with probability `prob` (drawn on the CPU generator)."""
    if prob <= 0:
        return images
    flip = (torch.rand(images.shape[0]) < prob).to(images.device).view(-1, 1, 1, 1)
    return torch.where(flip, images.flip(-1), images)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> float32 (x / 255 - mean) / std, as ToDtype(scale=True) + Normalize."""
    mean_t = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return (images.to(torch.float32) / 255.0 - mean_t) / std_t


def center_crops(
    images: Sequence[torch.Tensor], size: int, crop_pct: float, interpolation: str = "bicubic"
) -> torch.Tensor:
    """The eval transform's geometry: shorter side to round(size / crop_pct), then the central size x size."""
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    resize = int(round(size / crop_pct))
    mode = interpolation_mode(interpolation)
    out = [
        TF.center_crop(TF.resize(image, resize, interpolation=mode, antialias=True), [size, size]) for image in images
    ]
    return torch.stack(out)


def squash_resizes(images: Sequence[torch.Tensor], size: int, interpolation: str = "bicubic") -> torch.Tensor:
    """The "squash" eval geometry: each whole image resized to size x size (antialiased)."""
    mode = interpolation_mode(interpolation)
    return torch.stack([TF.resize(image, [size, size], interpolation=mode, antialias=True) for image in images])
