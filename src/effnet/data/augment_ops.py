"""The reference's augmentation ops on uint8 RGB pixels, as tensorflow/tpu autoaugment.py computes them.

Grey fill 128, nearest-neighbour geometry through TF's projective transform (pixel indices, ties rounded away
from zero), PIL-style enhancement blends that truncate, and what the reference's uint8 arithmetic does with its
arguments (docs/augment.md). Every op but the random Cutout reproduces TF 2.21's outputs pixel for pixel
(tests/fixtures/tf/ops.npz). The policies that draw them: `effnet.data.autoaugment`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

FILL = (128, 128, 128)  # the reference's replace value for pixels that geometry ops leave empty, and for Cutout

# distort_image_with_randaugment's `available_ops`, in its order (no Identity).
RANDAUGMENT_OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "Color", "Contrast",
    "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY", "Cutout", "SolarizeAdd",
)  # fmt: skip


def _as_uint8(value: int) -> int:
    # The reference compares and shifts uint8 tensors by Python ints, which TF converts to uint8: modulo 256.
    return value % 256


def _blend(degenerate: np.ndarray, image: np.ndarray, factor: float) -> np.ndarray:
    """The reference's blend: degenerate + factor * (image - degenerate), clipped, truncated to uint8."""
    if factor == 0.0:
        return degenerate.astype(np.uint8)
    if factor == 1.0:
        return image
    out = degenerate.astype(np.float32) + np.float32(factor) * (image.astype(np.float32) - degenerate)
    return np.clip(out, 0.0, 255.0).astype(np.uint8)


def _grayscale(image: np.ndarray) -> np.ndarray:
    # tf.image.rgb_to_grayscale on uint8: to [0, 1], luma weights, back with x * 255.5 truncated (saturating).
    luma = image.astype(np.float32) / 255.0 @ np.array([0.2989, 0.5870, 0.1140], np.float32)
    return np.clip(luma * 255.5, 0, 255).astype(np.uint8)[..., None]


def _autocontrast(image: np.ndarray) -> np.ndarray:
    out = image.copy()
    for c in range(3):
        channel = image[..., c].astype(np.float32)
        lo, hi = channel.min(), channel.max()
        if hi > lo:
            scale = np.float32(255.0) / (hi - lo)
            out[..., c] = np.clip(channel * scale - lo * scale, 0.0, 255.0).astype(np.uint8)
    return out


def _equalize(image: np.ndarray) -> np.ndarray:
    out = image.copy()
    for c in range(3):
        histogram = np.bincount(image[..., c].ravel(), minlength=256).astype(np.int64)
        nonzero = histogram[histogram > 0]
        step = (nonzero.sum() - nonzero[-1]) // 255
        if step == 0:
            continue
        lut = (np.cumsum(histogram) + step // 2) // step
        lut = np.clip(np.concatenate([[0], lut[:-1]]), 0, 255).astype(np.uint8)
        out[..., c] = lut[image[..., c]]
    return out


def _posterize(image: np.ndarray, bits: int) -> np.ndarray:
    # shift = 8 - bits as uint8, then TF's shift kernels clamp it to 7: "0 bits" keeps the top bit, and
    # bits > 8 (levels >= 22.5) wrap to a shift of ~255, i.e. also 1 bit.
    shift = min(_as_uint8(8 - bits), 7)
    return ((image >> shift) << shift).astype(np.uint8)


def _solarize(image: np.ndarray, threshold: int) -> np.ndarray:
    return np.where(image < _as_uint8(threshold), image, 255 - image).astype(np.uint8)


def _solarize_add(image: np.ndarray, addition: int, threshold: int = 128) -> np.ndarray:
    added = np.clip(image.astype(np.int64) + addition, 0, 255).astype(np.uint8)
    return np.where(image < threshold, added, image)


def _contrast(image: np.ndarray, factor: float) -> np.ndarray:
    # The reference's "mean" is sum(histogram) / 256, i.e. the pixel count / 256, not the mean grey level.
    height, width = image.shape[:2]
    level = np.uint8(min(255.0, height * width / 256.0))
    return _blend(np.full_like(image, level), image, factor)


# tf.nn.depthwise_conv2d's weights: the SMOOTH kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 in float32.
_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / np.float32(13)


# floor(q / 13) and "q is a multiple of 13" for every 3x3 SMOOTH sum q = 8 neighbours + 5 x centre of uint8 pixels.
_SMOOTH_SUMS = np.arange(13 * 255 + 1)
_SMOOTH_FLOOR = (_SMOOTH_SUMS // 13).astype(np.uint8)
_SMOOTH_TIE = _SMOOTH_SUMS % 13 == 0


def _smooth_ties(image: np.ndarray, ties: np.ndarray) -> np.ndarray:
    # TF's float32 depthwise conv at the given flat interior positions: its CPU kernel accumulates the nine taps row
    # by row with fused multiply-adds, which float64 products reproduce exactly (a 24-bit weight times an 8-bit
    # pixel plus a float32 sum is exact in float64, then rounded once to float32), e.g. 116.99999 -> 116.
    height, width, channels = image.shape
    corner = ties + 2 * channels * (ties // ((width - 2) * channels))  # the window's top-left byte in `image`
    pixels = image.reshape(-1)
    total = np.zeros(ties.shape, np.float32)
    for dy in range(3):
        for dx in range(3):
            tap = np.take(pixels, corner + (dy * width + dx) * channels) * float(_SMOOTH[dy, dx])
            total[...] = np.add(tap, total, out=tap)  # rounded to float32 after each tap, as an FMA
    return np.clip(total, 0.0, 255.0).astype(np.uint8)


def _sharpness(image: np.ndarray, factor: float) -> np.ndarray:
    # TF's float32 SMOOTH conv on the interior (the one-pixel border stays as it was), then truncation. Its result
    # is within 1e-4 of q / 13 (float32 weights off by 2^-24 relative, nine roundings of at most 2^-17 below 256),
    # so where the integer q is not a multiple of 13 (q / 13 at least 1/13 from an integer) it truncates to
    # q // 13 exactly; only the ~8-10% of multiples (ties such as 116.99999 -> 116) run TF's float32 arithmetic.
    height, width = image.shape[:2]
    x = image.astype(np.int16)
    rows = x[:, :-2] + x[:, 1:-1]
    rows += x[:, 2:]
    q = rows[:-2] + rows[1:-1]
    q += rows[2:]
    q += 4 * x[1:-1, 1:-1]  # 13 * 255 at most: int16
    interior = np.take(_SMOOTH_FLOOR, q)
    ties = np.flatnonzero(np.take(_SMOOTH_TIE, q))
    interior.reshape(-1)[ties] = _smooth_ties(image, ties)
    smooth = image.copy()
    smooth[1:-1, 1:-1] = interior
    return _blend(smooth, image, factor)


def _cutout(image: np.ndarray, pad_size: int) -> np.ndarray:
    height, width = image.shape[:2]
    cy, cx = int(torch.randint(0, height, ())), int(torch.randint(0, width, ()))
    out = image.copy()
    out[max(0, cy - pad_size) : cy + pad_size, max(0, cx - pad_size) : cx + pad_size] = FILL
    return out


def _round_half_away(values: np.ndarray) -> np.ndarray:
    # std::round (ties away from zero); |v| - floor(|v|) is exact in float32, so ties are seen exactly.
    magnitude = np.abs(values)
    rounded = np.floor(magnitude)
    rounded += magnitude - rounded >= 0.5
    return np.copysign(rounded, values).astype(np.intp)


@functools.lru_cache(maxsize=32)
def _source_index(height: int, width: int, channels: int, matrix: tuple[float, ...]) -> np.ndarray:
    """For each output byte, the byte it reads from the image's flat pixels with one grey FILL pixel appended."""
    a0, a1, a2, b0, b1, b2 = (np.float32(v) for v in matrix)
    xs, ys = np.arange(width, dtype=np.float32)[None, :], np.arange(height, dtype=np.float32)[:, None]
    in_x = _round_half_away(a0 * xs + a1 * ys + a2)
    in_y = _round_half_away(b0 * xs + b1 * ys + b2)
    inside = (in_x >= 0) & (in_x < width) & (in_y >= 0) & (in_y < height)
    # Pixels that land outside read the extra grey pixel appended after the image.
    flat = np.where(inside, in_y * width + in_x, height * width)
    index = flat[..., None] * channels + np.arange(channels)
    index = index.astype(np.int32 if (height * width + 1) * channels < 2**31 else np.intp)  # int32: faster take
    index.flags.writeable = False
    return index


def _projective(image: np.ndarray, matrix: tuple[np.float32, ...]) -> np.ndarray:
    """TF's ImageProjectiveTransformV3 (nearest, constant fill) with the reference's wrap/unwrap: grey 128 outside.

    Output pixel (x, y) reads input (round(a0 x + a1 y + a2), round(b0 x + b1 y + b2)), computed in float32 in
    TF's order: the transform maps pixel indices, not pixel centres as PIL does (PIL's shear differs by level/2 px).
    Those indices depend only on the image size and the matrix (a few per magnitude and size), so they are cached.
    """
    height, width, channels = image.shape
    # float(np.float32) is exact, so the key is the float32 matrix itself.
    index = _source_index(height, width, channels, tuple(float(np.float32(v)) for v in matrix))
    pixels = np.concatenate([image.reshape(-1), np.array(FILL, image.dtype)])
    return np.take(pixels, index)


def _rotation(image: np.ndarray, degrees: float) -> tuple[np.float32, ...]:
    # tensorflow_addons (contrib) angles_to_projective_transforms in float32: about the image centre, positive
    # angles turn the content counter-clockwise.
    radians = np.float32(degrees * (math.pi / 180.0))
    cos, sin = np.cos(radians), np.sin(radians)
    h, w = np.float32(image.shape[0] - 1), np.float32(image.shape[1] - 1)
    x_offset = (w - (cos * w - sin * h)) / np.float32(2)
    y_offset = (h - (sin * w + cos * h)) / np.float32(2)
    return cos, -sin, x_offset, sin, cos, y_offset


_ONE, _ZERO = np.float32(1), np.float32(0)
_GEOMETRY: dict[str, Callable[[np.ndarray, float], tuple[np.float32, ...]]] = {
    "Rotate": _rotation,
    # The reference's shear matrices [1, level, 0, 0, 1, 0] and [1, 0, 0, level, 1, 0]; translate(wrap(image),
    # [-pixels, 0]) gives [1, 0, pixels, 0, 1, 0].
    "ShearX": lambda image, level: (_ONE, np.float32(level), _ZERO, _ZERO, _ONE, _ZERO),
    "ShearY": lambda image, level: (_ONE, _ZERO, _ZERO, np.float32(level), _ONE, _ZERO),
    "TranslateX": lambda image, pixels: (_ONE, _ZERO, np.float32(pixels), _ZERO, _ONE, _ZERO),
    "TranslateY": lambda image, pixels: (_ONE, _ZERO, _ZERO, _ZERO, _ONE, np.float32(pixels)),
}


_OPS: dict[str, Callable[..., np.ndarray]] = {
    "AutoContrast": _autocontrast,
    "Equalize": _equalize,
    "Invert": lambda image: (255 - image).astype(np.uint8),
    "Posterize": _posterize,
    "Solarize": _solarize,
    "SolarizeAdd": _solarize_add,
    "Color": lambda image, factor: _blend(np.repeat(_grayscale(image), 3, axis=2), image, factor),
    "Contrast": _contrast,
    "Brightness": lambda image, factor: _blend(np.zeros_like(image), image, factor),
    "Sharpness": _sharpness,
    "Cutout": _cutout,
    **{name: lambda image, arg, name=name: _projective(image, _GEOMETRY[name](image, arg)) for name in _GEOMETRY},
}


def apply_op(image: Image.Image | np.ndarray, name: str, arg: float | int | None) -> Image.Image | np.ndarray:
    """Apply op `name` with its (already signed) argument to an RGB PIL image (or uint8 [H, W, 3] pixels: to pixels)."""
    if name not in _OPS:
        raise ValueError(f"unknown augmentation op {name!r}; choose one of {', '.join(RANDAUGMENT_OPS)}")
    pixels = image if isinstance(image, np.ndarray) else as_pixels(image)
    out = _OPS[name](pixels) if arg is None else _OPS[name](pixels, arg)
    return out if isinstance(image, np.ndarray) else Image.fromarray(np.ascontiguousarray(out), mode="RGB")


def as_pixels(image: Image.Image | torch.Tensor) -> np.ndarray:
    """uint8 [H, W, 3] pixels of an RGB PIL image or a uint8 tensor [3, H, W] (of a tensor: a view)."""
    if isinstance(image, torch.Tensor):
        return image.permute(1, 2, 0).numpy()  # a view: no op writes into its input
    return np.asarray(image.convert("RGB") if image.mode != "RGB" else image, dtype=np.uint8)
