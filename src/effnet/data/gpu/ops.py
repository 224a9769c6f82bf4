"""Batched twins of the reference RandAugment / AutoAugment ops (effnet.data.augment_ops) on uint8 [N, 3, H, W].

Every op takes the batch and one argument per sample (a CPU tensor [N], already signed) and works on any device.
The ops repeat the CPU ops' uint8 / float32 / float64 arithmetic step by step (the CPU ops reproduce TF's), so they
agree bit for bit except Color, whose luma dot product may round its last float32 bit differently (<= 1 level,
rarely). Geometry uses the CPU ops' own transform matrices (TF's projective transform on pixel indices).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from effnet.data.augment_ops import _GEOMETRY, FILL  # the CPU ops' transform matrices

OpFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_LUMA = (0.2989, 0.5870, 0.1140)  # tf.image.rgb_to_grayscale's weights, as the CPU Color op uses them


def _per_sample(values: torch.Tensor, images: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """One value per sample as a [N, 1, 1, 1] tensor on the images' device."""
    return values.to(dtype).view(-1, 1, 1, 1).to(images.device)


def _truncate(values: torch.Tensor) -> torch.Tensor:
    # numpy's float32 -> uint8 after np.clip(0, 255): truncation toward zero.
    return values.clamp(0.0, 255.0).to(torch.uint8)


def blend(degenerate: torch.Tensor, images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """The reference's blend d + f * (x - d) in float32, clipped and truncated; f per sample."""
    weight = _per_sample(factor.to(torch.float32), images, torch.float32)
    low = degenerate.to(torch.float32)
    return _truncate(low + weight * (images.to(torch.float32) - low))


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """tf.image.rgb_to_grayscale on uint8 as the CPU op computes it: [N, 1, H, W] uint8."""
    scaled = images.to(torch.float32) / 255.0
    luma = scaled[:, 0] * _LUMA[0] + scaled[:, 1] * _LUMA[1] + scaled[:, 2] * _LUMA[2]
    return _truncate(luma * 255.5).unsqueeze(1)


def autocontrast(images: torch.Tensor, arg: torch.Tensor | None = None) -> torch.Tensor:
    """Stretch each channel of each image to [0, 255]; flat channels stay as they are."""
    x = images.to(torch.float32)
    low = x.amin(dim=(2, 3), keepdim=True)
    high = x.amax(dim=(2, 3), keepdim=True)
    scale = 255.0 / torch.where(high > low, high - low, torch.ones_like(high))
    out = _truncate(x * scale - low * scale)
    return torch.where(high > low, out, images)


def equalize(images: torch.Tensor, arg: torch.Tensor | None = None) -> torch.Tensor:
    """Histogram equalization per channel with the reference's integer LUT (PIL's ImageOps.equalize)."""
    count, channels, height, width = images.shape
    flat = images.reshape(count * channels, height * width)
    rows = count * channels
    # One bincount over (channel, value) codes: one histogram of 256 bins per channel of every image.
    codes = flat.to(torch.int64) + 256 * torch.arange(rows, device=images.device).view(-1, 1)
    histogram = torch.bincount(codes.flatten(), minlength=rows * 256).view(rows, 256)
    top = flat.amax(dim=1, keepdim=True).to(torch.int64)  # the last non-empty bin
    step = (height * width - histogram.gather(1, top)) // 255
    safe = step.clamp(min=1)
    lut = (histogram.cumsum(dim=1) + safe // 2) // safe
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut[:, :-1]], dim=1).clamp(0, 255)
    lut = torch.where(step > 0, lut, torch.arange(256, device=images.device))  # no step: identity
    mapped = lut.to(torch.uint8).flatten()[codes.flatten()]
    return mapped.view(count, channels, height, width)


def invert(images: torch.Tensor, arg: torch.Tensor | None = None) -> torch.Tensor:
    """255 - x."""
    return 255 - images


def posterize(images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the top `bits` bits, with the reference's uint8 wrap and TF's shift clamp at 7."""
    shift = torch.tensor([min((8 - int(b)) % 256, 7) for b in bits.tolist()], dtype=torch.int64)
    step = _per_sample(2**shift, images, torch.int16)
    return (images.to(torch.int16) // step * step).to(torch.uint8)


def solarize(images: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Invert pixels at or above the threshold (taken modulo 256, as the reference's uint8 compare)."""
    limit = _per_sample(threshold.to(torch.int64) % 256, images, torch.int16)
    return torch.where(images.to(torch.int16) < limit, images, 255 - images)


def solarize_add(images: torch.Tensor, addition: torch.Tensor, threshold: int = 128) -> torch.Tensor:
    """Add to pixels below 128, saturating."""
    added = (images.to(torch.int16) + _per_sample(addition, images, torch.int16)).clamp(0, 255).to(torch.uint8)
    return torch.where(images < threshold, added, images)


def color(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the greyscale image."""
    return blend(grayscale(images).expand_as(images), images, factor)


def contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the reference's flat "mean": pixel count / 256 (not the mean grey level)."""
    level = int(min(255.0, images.shape[2] * images.shape[3] / 256.0))
    return blend(torch.full_like(images, level), images, factor)


def brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with black."""
    return blend(torch.zeros_like(images), images, factor)


def sharpness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with TF's SMOOTH depthwise conv on the interior (the border kept), accumulated as the CPU op does:
    float64 products added to a float32 sum, rounded to float32 after each tap (TF's fused multiply-adds)."""
    x = images.to(torch.float64)
    height, width = x.shape[2], x.shape[3]
    kernel = torch.tensor([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=torch.float32) / 13.0
    total = torch.zeros_like(x[:, :, 1:-1, 1:-1], dtype=torch.float32)
    for dy in range(3):
        for dx in range(3):
            tap = x[:, :, dy : height - 2 + dy, dx : width - 2 + dx] * float(kernel[dy, dx])
            total = (tap + total.to(torch.float64)).to(torch.float32)
    smooth = images.clone()
    smooth[:, :, 1:-1, 1:-1] = _truncate(total)
    return blend(smooth, images, factor)


def cutout(images: torch.Tensor, half: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Grey (128) boxes [cy - half, cy + half) x [cx - half, cx + half), clipped; `centres` [N, 2] is (cy, cx)."""
    height, width = images.shape[2], images.shape[3]
    device = images.device
    half, centres = half.to(torch.int64).to(device), centres.to(device)
    top, bottom = (centres[:, 0] - half).clamp(min=0), centres[:, 0] + half
    left, right = (centres[:, 1] - half).clamp(min=0), centres[:, 1] + half
    rows, cols = torch.arange(height, device=device), torch.arange(width, device=device)
    inside_rows = (rows[None] >= top[:, None]) & (rows[None] < bottom[:, None])
    inside_cols = (cols[None] >= left[:, None]) & (cols[None] < right[:, None])
    mask = inside_rows[:, :, None] & inside_cols[:, None, :]  # built on the device: no [N, H, W] copy
    return torch.where(mask[:, None], torch.full_like(images, FILL[0]), images)


def _gather(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """out[n, :, y, x] = images[n, :, rows[n, y, x], cols[n, y, x]], grey where the source is outside."""
    count, channels, height, width = images.shape
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    index = (rows.clamp(0, height - 1) * width + cols.clamp(0, width - 1)).view(count, 1, -1)
    picked = images.reshape(count, channels, -1).gather(2, index.expand(count, channels, -1))
    picked = picked.view(count, channels, height, width)
    return torch.where(inside[:, None], picked, torch.full_like(picked, FILL[0]))


def _round_half_away(values: torch.Tensor) -> torch.Tensor:
    # std::round, as TF's nearest sampler (torch.round would round ties to even).
    magnitude = values.abs()
    rounded = magnitude.floor()
    rounded = rounded + (magnitude - rounded >= 0.5).to(values.dtype)
    return torch.copysign(rounded, values).to(torch.int64)


def projective_nearest(images: torch.Tensor, matrices: list[tuple[float, ...]]) -> torch.Tensor:
    """TF's projective transform (nearest, grey 128 outside) per sample, as the CPU ops compute it: output (x, y)
    reads input (round(a0 x + a1 y + a2), round(b0 x + b1 y + b2)) on pixel indices, in float32, in TF's order."""
    count, _, height, width = images.shape
    device = images.device
    coefficients = torch.tensor(matrices, dtype=torch.float32, device=device).view(count, 6, 1, 1)
    xs = torch.arange(width, dtype=torch.float32, device=device).view(1, 1, -1)
    ys = torch.arange(height, dtype=torch.float32, device=device).view(1, -1, 1)
    in_x = coefficients[:, 0] * xs + coefficients[:, 1] * ys + coefficients[:, 2]
    in_y = coefficients[:, 3] * xs + coefficients[:, 4] * ys + coefficients[:, 5]
    return _gather(images, _round_half_away(in_y), _round_half_away(in_x))


def _geometry(name: str) -> OpFunction:
    def op(images: torch.Tensor, arg: torch.Tensor) -> torch.Tensor:
        # The CPU op's own float32 matrices (they only read the image's height and width), so both stay one recipe.
        shape = np.broadcast_to(np.uint8(0), (images.shape[2], images.shape[3], 3))
        return projective_nearest(images, [tuple(float(v) for v in _GEOMETRY[name](shape, a)) for a in arg.tolist()])

    op.__name__ = name
    op.__doc__ = f"Batched {name}: the CPU op's TF projective transform, one matrix per sample."
    return op


# The CPU ops' names -> batched twins (Cutout takes its centres too, see `cutout`).
BATCHED_OPS: dict[str, OpFunction] = {
    "AutoContrast": autocontrast,
    "Equalize": equalize,
    "Invert": invert,
    "Posterize": posterize,
    "Solarize": solarize,
    "SolarizeAdd": solarize_add,
    "Color": color,
    "Contrast": contrast,
    "Brightness": brightness,
    "Sharpness": sharpness,
    **{name: _geometry(name) for name in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")},
    "Identity": lambda images, arg: images,
}
