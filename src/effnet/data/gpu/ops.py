"""Batched twins of the reference RandAugment / AutoAugment ops (effnet.data.autoaugment) on uint8 [N, 3, H, W].

Every op takes the batch and one argument per sample (a CPU tensor [N], already signed) and works on any device.
Pixel ops repeat the CPU ops' uint8 / float32 arithmetic step by step, so they agree bit for bit except Color,
whose luma dot product may round its last float32 bit differently (<= 1 level, rarely). Geometry repeats what
Pillow's C code does for the CPU ops: `Image.transform(AFFINE, NEAREST)` samples pixel centres through 16.16 fixed
point (shear, rotate) or through a float table when the matrix only scales and shifts (translate); `rotate` by a
multiple of 90 degrees transposes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from effnet.data.autoaugment import FILL

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
    flat = images.reshape(count * channels, height * width).to(torch.int64)
    histogram = torch.zeros(count * channels, 256, dtype=torch.int64, device=images.device)
    histogram.scatter_add_(1, flat, torch.ones_like(flat))
    top = flat.amax(dim=1, keepdim=True)  # the last non-empty bin
    step = (height * width - histogram.gather(1, top)) // 255
    safe = step.clamp(min=1)
    lut = (histogram.cumsum(dim=1) + safe // 2) // safe
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut[:, :-1]], dim=1).clamp(0, 255)
    mapped = lut.gather(1, flat)
    out = torch.where(step > 0, mapped, flat)
    return out.to(torch.uint8).view(count, channels, height, width)


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
    """Blend with PIL's SMOOTH filter on the interior (the one-pixel border kept), summed in the CPU op's order."""
    x = images.to(torch.float32)
    height, width = x.shape[2], x.shape[3]
    total = None
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            window = x[:, :, 1 + dy : height - 1 + dy, 1 + dx : width - 1 + dx]
            total = window if total is None else total + window
    assert total is not None
    smooth = images.clone()
    smooth[:, :, 1:-1, 1:-1] = _truncate((total + 4.0 * x[:, :, 1:-1, 1:-1]) / 13.0)
    return blend(smooth, images, factor)


def cutout(images: torch.Tensor, half: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Grey (128) boxes [cy - half, cy + half) x [cx - half, cx + half), clipped; `centres` [N, 2] is (cy, cx)."""
    height, width = images.shape[2], images.shape[3]
    half = half.to(torch.int64)
    top, bottom = (centres[:, 0] - half).clamp(min=0), centres[:, 0] + half
    left, right = (centres[:, 1] - half).clamp(min=0), centres[:, 1] + half
    rows, cols = torch.arange(height), torch.arange(width)
    inside_rows = (rows[None] >= top[:, None]) & (rows[None] < bottom[:, None])
    inside_cols = (cols[None] >= left[:, None]) & (cols[None] < right[:, None])
    mask = (inside_rows[:, :, None] & inside_cols[:, None, :]).to(images.device)
    return torch.where(mask[:, None], torch.full_like(images, FILL[0]), images)


def _gather(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """out[n, :, y, x] = images[n, :, rows[n, y, x], cols[n, y, x]], grey where the source is outside."""
    count, channels, height, width = images.shape
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    index = (rows.clamp(0, height - 1) * width + cols.clamp(0, width - 1)).view(count, 1, -1)
    picked = images.reshape(count, channels, -1).gather(2, index.expand(count, channels, -1))
    picked = picked.view(count, channels, height, width)
    return torch.where(inside[:, None], picked, torch.full_like(picked, FILL[0]))


def _fixed(value: float) -> int:
    # Pillow's FIX(v): FLOOR(v * 65536 + 0.5), 16.16 fixed point.
    return math.floor(value * 65536.0 + 0.5)


def affine_nearest(images: torch.Tensor, matrices: list[tuple[float, ...]]) -> torch.Tensor:
    """Pillow's `transform(AFFINE, NEAREST, fillcolor=128)` per sample: output (x, y) reads the input at
    floor(a (x + .5) + b (y + .5) + c, d (x + .5) + e (y + .5) + f)."""
    count, _, height, width = images.shape
    device = images.device
    xs = torch.arange(width, device=device, dtype=torch.int64).view(1, 1, -1)
    ys = torch.arange(height, device=device, dtype=torch.int64).view(1, -1, 1)
    if all(m[1] == 0 and m[3] == 0 for m in matrices):
        # ImagingScaleAffine: float tables of source columns and rows.
        col_tab = torch.tensor([[math.floor(m[2] + m[0] * 0.5 + x * m[0]) for x in range(width)] for m in matrices])
        row_tab = torch.tensor([[math.floor(m[5] + m[4] * 0.5 + y * m[4]) for y in range(height)] for m in matrices])
        rows = row_tab.to(device).view(count, height, 1).expand(count, height, width)
        cols = col_tab.to(device).view(count, 1, width).expand(count, height, width)
        return _gather(images, rows, cols)
    fixed = torch.tensor(
        [[_fixed(m[0]), _fixed(m[1]), _fixed(m[2] + m[0] * 0.5 + m[1] * 0.5),
          _fixed(m[3]), _fixed(m[4]), _fixed(m[5] + m[3] * 0.5 + m[4] * 0.5)] for m in matrices],
        dtype=torch.int64, device=device,
    ).view(count, 6, 1, 1)  # fmt: skip
    col_fixed = fixed[:, 2] + xs * fixed[:, 0] + ys * fixed[:, 1]
    row_fixed = fixed[:, 5] + xs * fixed[:, 3] + ys * fixed[:, 4]
    return _gather(images, row_fixed >> 16, col_fixed >> 16)  # arithmetic shift: floor, as in C


def shear_x(images: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Output (x, y) samples input (x + level * y, y)."""
    return affine_nearest(images, [(1.0, s, 0.0, 0.0, 1.0, 0.0) for s in level.tolist()])


def shear_y(images: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Output (x, y) samples input (x, level * x + y)."""
    return affine_nearest(images, [(1.0, 0.0, 0.0, s, 1.0, 0.0) for s in level.tolist()])


def translate_x(images: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Output (x, y) samples input (x + pixels, y)."""
    return affine_nearest(images, [(1.0, 0.0, p, 0.0, 1.0, 0.0) for p in pixels.tolist()])


def translate_y(images: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Output (x, y) samples input (x, y + pixels)."""
    return affine_nearest(images, [(1.0, 0.0, 0.0, 0.0, 1.0, p) for p in pixels.tolist()])


def _rotation_matrix(degrees: float, width: int, height: int) -> tuple[float, ...]:
    # Image.rotate's inverse matrix about the centre (w / 2, h / 2), its coefficients rounded to 15 places.
    angle = -math.radians(degrees)
    a, b = round(math.cos(angle), 15), round(math.sin(angle), 15)
    d, e = round(-math.sin(angle), 15), round(math.cos(angle), 15)
    cx, cy = width / 2, height / 2
    return (a, b, a * -cx + b * -cy + cx, d, e, d * -cx + e * -cy + cy)


def rotate(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Counter-clockwise about the centre; Image.rotate's transposes for 0 / 90 / 180 / 270 degrees."""
    height, width = images.shape[2], images.shape[3]
    angles = [a % 360.0 for a in degrees.tolist()]
    out = affine_nearest(images, [_rotation_matrix(a, width, height) for a in angles])
    for index, angle in enumerate(angles):
        turns = {0.0: 0, 90.0: 1, 180.0: 2, 270.0: 3}.get(angle)
        if turns is not None and (turns % 2 == 0 or width == height):
            out[index] = torch.rot90(images[index], turns, dims=(1, 2))
    return out


OpFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
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
    "ShearX": shear_x,
    "ShearY": shear_y,
    "TranslateX": translate_x,
    "TranslateY": translate_y,
    "Rotate": rotate,
    "Identity": lambda images, arg: images,
}
