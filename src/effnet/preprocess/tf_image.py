"""The TF references' eval preprocessing, reproduced in numpy: their crop window and their (non-antialiased) resizes.

- "tpu" (tensorflow/tpu efficientnet preprocessing.py `_decode_and_center_crop`, the code behind the published V1,
  Lite and V2-B0..B3 checkpoints): a square window of int(size / (size + 32) * min(h, w)) pixels centred at
  ((h - crop + 1) // 2, (w - crop + 1) // 2), resized with TF1's legacy `resize_bicubic`.
- "tpu_2021": the same with tpu commit 22d5cab's padding round(size * (1 / 0.875 - 1)) (= 32 at 224, 34 at 240).
- "v2" (google/automl efficientnetv2 preprocessing.py `preprocess_for_eval`): below 320 px the same window with
  offset (h - crop) // 2, then `tf.image.resize` (bilinear, half-pixel centres, no antialias); from 320 px the
  whole image.
All return float32 HWC values on the 0-255 scale, unrounded and unclipped (bicubic overshoots), which is what
the references normalize: none rounds or clips between the resize and the model. The values agree with TF's to
float32 rounding (tests/test_tf_image.py, fixtures written by TF 2.21 with tests/fixtures/make_tf_fixtures.py).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

TF_EVAL_VARIANTS = ("tpu", "tpu_2021", "v2")
TPU_CROP_PADDING = 32  # tensorflow/tpu preprocessing.CROP_PADDING until 2021, and automl's V2 eval
V2_CROP_BELOW = 320  # automl preprocess_for_eval crops only below this size
_TABLE_SIZE = 1024  # TF's bicubic kernel samples its cubic at multiples of 1/1024
_LEGACY_CUBIC_A = -0.75  # resize_bicubic without half-pixel centres uses a = -0.75 (Keys' -0.5 only with them)


def tpu_crop_padding(size: int) -> int:
    """tensorflow/tpu's padding since 2021: round(size * (1 / 0.875 - 1)), i.e. a fixed crop fraction of 0.875."""
    return round(size * (1 / 0.875 - 1))


def tf_center_crop_window(
    height: int, width: int, size: int, *, crop_padding: int = TPU_CROP_PADDING, centre: str = "tpu"
) -> tuple[int, int, int]:
    """The references' square eval window (top, left, side): side int(size / (size + padding) * min(h, w)).

    The ratio is a Python float that TF multiplies by a float32 tensor, so the product is float32, then
    truncated. centre="tpu": offset (h - side + 1) // 2; centre="v2" (automl): (h - side) // 2.
    """
    if centre not in ("tpu", "v2"):
        raise ValueError(f"centre must be 'tpu' or 'v2', got {centre!r}")
    side = int(np.float32(size / (size + crop_padding)) * np.float32(min(height, width)))
    round_up = 1 if centre == "tpu" else 0
    return (height - side + round_up) // 2, (width - side + round_up) // 2, side


def _legacy_cubic_table() -> np.ndarray:
    # TF's InitCoeffsTable: rows i = 0..1024 hold the weights at distance i/1024 and 1 + i/1024, in float32.
    a = _LEGACY_CUBIC_A
    x = np.arange(_TABLE_SIZE + 1, dtype=np.float64) / _TABLE_SIZE
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
    return np.stack([near, far], axis=1).astype(np.float32)


_CUBIC_TABLE = _legacy_cubic_table()


def _legacy_bicubic_axis(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices [out, 4] and float32 weights [out, 4] of TF's legacy bicubic along one axis (edges repeated)."""
    scale = np.float32(in_size) / np.float32(out_size)
    position = np.arange(out_size, dtype=np.float32) * scale  # LegacyScaler: no half-pixel shift
    start = np.floor(position)
    offset = np.rint((position - start) * np.float32(_TABLE_SIZE)).astype(np.int64)  # lrintf: ties to even
    weights = np.stack(
        [_CUBIC_TABLE[offset, 1], _CUBIC_TABLE[offset, 0], _CUBIC_TABLE[_TABLE_SIZE - offset, 0],
         _CUBIC_TABLE[_TABLE_SIZE - offset, 1]], axis=1)  # fmt: skip
    indices = np.clip(start.astype(np.int64)[:, None] + np.arange(-1, 3), 0, in_size - 1)
    return indices, weights


def resize_bicubic_legacy(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """TF1 `tf.compat.v1.image.resize_bicubic(align_corners=False, half_pixel_centers=False)`: HWC -> float32.

    Cubic a = -0.75 sampled from TF's 1024-step table, sample points out * in / out (no half-pixel shift),
    edge pixels repeated, no antialias; columns interpolated first, then rows, as TF does.
    """
    pixels = np.asarray(image).astype(np.float32)
    rows, row_weights = _legacy_bicubic_axis(pixels.shape[0], height)
    cols, col_weights = _legacy_bicubic_axis(pixels.shape[1], width)
    # Left to right in float32, as TF's Interpolate1D: w0 v0 + w1 v1 + w2 v2 + w3 v3.
    vertical = pixels[rows[:, 0]] * row_weights[:, 0, None, None]
    for k in range(1, 4):
        vertical = vertical + pixels[rows[:, k]] * row_weights[:, k, None, None]
    out = vertical[:, cols[:, 0]] * col_weights[None, :, 0, None]
    for k in range(1, 4):
        out = out + vertical[:, cols[:, k]] * col_weights[None, :, k, None]
    return out


def _half_pixel_bilinear_axis(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # TF's compute_interpolation_weights with HalfPixelScaler, in float32.
    scale = np.float32(in_size) / np.float32(out_size)
    position = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(position)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(position).astype(np.int64), in_size - 1)
    return lower, upper, (position - floor).astype(np.float32)


def resize_bilinear_half_pixel(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """TF2 `tf.image.resize(method="bilinear", antialias=False)` (half-pixel centres): HWC -> float32 HWC."""
    pixels = np.asarray(image).astype(np.float32)
    top, bottom, y_lerp = _half_pixel_bilinear_axis(pixels.shape[0], height)
    left, right, x_lerp = _half_pixel_bilinear_axis(pixels.shape[1], width)
    x_lerp = x_lerp[None, :, None]
    # TF's compute_lerp: along x first (top and bottom rows), then along y.
    upper_row, lower_row = pixels[top], pixels[bottom]
    upper = upper_row[:, left] + (upper_row[:, right] - upper_row[:, left]) * x_lerp
    lower = lower_row[:, left] + (lower_row[:, right] - lower_row[:, left]) * x_lerp
    return upper + (lower - upper) * y_lerp[:, None, None]


def tf_eval_image(image: np.ndarray | Image.Image, size: int, variant: str = "tpu") -> np.ndarray:
    """A reference's eval input from an RGB image (uint8 HWC array or PIL): float32 [size, size, 3] on 0-255.

    variant "tpu" (crop padding 32, legacy bicubic), "tpu_2021" (padding round(size / 7)) or "v2" (automl:
    bilinear, crop only below 320 px); see the module docstring. Normalize the result as the model expects.
    """
    if variant not in TF_EVAL_VARIANTS:
        raise ValueError(f"variant must be one of {TF_EVAL_VARIANTS}, got {variant!r}")
    pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {pixels.shape}; convert it to RGB first")
    height, width = pixels.shape[:2]
    if variant == "v2":
        if size < V2_CROP_BELOW:
            top, left, side = tf_center_crop_window(height, width, size, centre="v2")
            pixels = pixels[top : top + side, left : left + side]
        return resize_bilinear_half_pixel(pixels, size, size)
    padding = TPU_CROP_PADDING if variant == "tpu" else tpu_crop_padding(size)
    top, left, side = tf_center_crop_window(height, width, size, crop_padding=padding)
    return resize_bicubic_legacy(pixels[top : top + side, left : left + side], size, size)
