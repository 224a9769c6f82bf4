"""The built-in procedural image dataset: shapes that differ by their outline and, within a pair, by fine stripes.

Every image is rendered on the fly from (seed, split, index), so there are no files and any render size works.
A class is a pair (outline, fill): 5 outlines (circle, square, triangle, cross, ring) x 2 fills (plain, finely
striped) = 10 classes. The outline is coarse: it survives at 32 px and a small network learns it within a few
hundred steps. The stripes are fine (periods of 3-5% of the image width: 4-6 px at 128 px, 1-1.6 px at 32 px),
so below ~64 px they blur into the plain fill's tone and only the outline is left: accuracy is capped near 50%
at 32 px and needs resolution and capacity beyond that. Position, size, rotation, colours, the background
gradient, clutter and pixel noise are nuisances.

History: an earlier design (coarse texture x fine texture classes) was harder than a few CPU minutes allow:
a small EfficientNet stayed at chance for 6 epochs. Outlines are what convnets pick up fastest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

SHAPES = ("circle", "square", "triangle", "cross", "ring")
FILLS = ("plain", "stripes")
CLASS_NAMES = [f"{shape}/{fill}" for shape in SHAPES for fill in FILLS]
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

# Stripe period as a fraction of the image width: 4-6.4 px at 128 px, 2-3.2 px at 64 px, 1-1.6 px at 32 px.
FINE_PERIODS = (0.03, 0.05)
# Object radius as a fraction of the image width (diameter 44%-68% of the image).
_RADIUS_RANGE = (0.22, 0.34)
# Rendered images are kept in memory while a split holds at most this many bytes of pixels (5,000 images at
# 128 px: 246 MB): rendering takes ~2.4 ms an image, a quarter of a short CPU run when redone every epoch.
CACHE_BYTES = 512 * 2**20


def _shape_distance(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance-like field (negative inside) of a unit-sized shape, in units of its radius."""
    if shape == "circle":
        return np.sqrt(x * x + y * y) - 0.9
    if shape == "square":
        return np.maximum(np.abs(x), np.abs(y)) - 0.8
    if shape == "triangle":
        # Equilateral triangle: the largest projection on its three edge normals (at -90, 30 and 150 degrees).
        c30 = math.cos(math.pi / 6)
        d = np.maximum(-y, c30 * x + 0.5 * y)
        return np.maximum(d, -c30 * x + 0.5 * y) - 0.55
    if shape == "ring":
        return np.abs(np.sqrt(x * x + y * y) - 0.65) - 0.3
    if shape == "cross":
        arm = 0.36
        return np.minimum(np.maximum(np.abs(x) - arm, np.abs(y) - 1.0), np.maximum(np.abs(x) - 1.0, np.abs(y) - arm))
    raise AssertionError(shape)


def _stripes(x: np.ndarray, period: float, px: float) -> np.ndarray:
    """Coverage in [0, 1] of stripes across x; `px` is one pixel in the same units, for a 1-pixel soft edge."""
    distance = np.sin(2 * math.pi * x / period) * (period / (2 * math.pi))  # signed, ~distance to an edge
    return np.clip(0.5 + distance / px, 0.0, 1.0)


def _tinted(rng: np.random.Generator, lightness: float, saturation: float = 0.15) -> np.ndarray:
    """A random, muted hue at a given lightness. Patterns are drawn in lightness, as in natural images: with
    fully random colours a small net needs many times more steps before it learns colour-invariant features."""
    hue = rng.uniform(-1.0, 1.0, size=3).astype(np.float32)
    hue -= hue.mean()
    return np.clip(lightness + rng.uniform(0.0, saturation) * hue, 0.0, 1.0)


def _rotated(rng: np.random.Generator, dx: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    angle = rng.uniform(0.0, 2 * math.pi)
    cos, sin = math.cos(angle), math.sin(angle)
    return cos * dx + sin * dy, -sin * dx + cos * dy


def render_sample(seed: int, split: str, index: int, size: int = 128) -> tuple[Image.Image, int]:
    """Render sample `index` of a split: an RGB PIL image of `size` x `size` and its class index."""
    if split not in _SPLIT_CODES:
        raise ValueError(f"split must be one of {sorted(_SPLIT_CODES)}, got {split!r}")
    rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
    label = index % len(CLASS_NAMES)
    shape, fill_kind = SHAPES[label // len(FILLS)], FILLS[label % len(FILLS)]

    image = np.asarray(_draw_background(rng, size), dtype=np.float32) / 255.0  # a writable copy
    radius = rng.uniform(*_RADIUS_RANGE)
    cx, cy = rng.uniform(-0.5 + 0.8 * radius, 0.5 - 0.8 * radius, size=2)
    # Only the object's bounding box is computed (every shape lies within 1.15 radii of its centre).
    px = 1.0 / size
    (x0, x1), (y0, y1) = (
        (max(0, int((c + 0.5 - 1.15 * radius) * size) - 1), min(size, int((c + 0.5 + 1.15 * radius) * size) + 2))
        for c in (cx, cy)
    )
    # Pixel-centre coordinates in units of the image width, relative to the object's centre.
    dx, dy = np.meshgrid(
        (np.arange(x0, x1, dtype=np.float32) + 0.5) * px - 0.5 - cx,
        (np.arange(y0, y1, dtype=np.float32) + 0.5) * px - 0.5 - cy,
    )
    lx, ly = _rotated(rng, dx, dy)
    alpha = np.clip(0.5 - _shape_distance(shape, lx / radius, ly / radius) * radius / px, 0.0, 1.0)[..., None]

    region = image[y0:y1, x0:x1]
    behind = float((region * alpha).sum() / max(3.0 * float(alpha.sum()), 1e-6))
    # The object stands out from what is behind it by lightness, whatever its hue.
    lightness = behind + (0.4 if behind < 0.5 else -0.4) * rng.uniform(0.8, 1.2)
    fill = np.broadcast_to(_tinted(rng, float(np.clip(lightness, 0.05, 0.95))), region.shape).copy()
    if fill_kind == "stripes":
        # Lighter and darker stripes around the same mean tone: shrunk, they become the plain fill.
        stripes = _stripes(_rotated(rng, dx, dy)[0], rng.uniform(*FINE_PERIODS), px)[..., None]
        fill = np.clip(fill + rng.uniform(0.2, 0.3) * (2.0 * stripes - 1.0), 0.0, 1.0)
    image[y0:y1, x0:x1] = region * (1.0 - alpha) + fill * alpha

    image = image + rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(0.0, 0.05)
    image = np.clip(image * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
    return Image.fromarray(image, mode="RGB"), label


def _draw_background(rng: np.random.Generator, size: int) -> Image.Image:
    """A gentle random gradient with clutter: a few lines and small solid blobs (never patterned)."""
    start = _tinted(rng, rng.uniform(0.1, 0.9), saturation=0.3)
    end = np.clip(start + rng.uniform(-0.2, 0.2), 0.0, 1.0)
    angle = rng.uniform(0.0, 2 * math.pi)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    gx, gy = np.meshgrid(ramp, ramp)
    t = np.clip(0.5 + (gx - 0.5) * math.cos(angle) + (gy - 0.5) * math.sin(angle), 0.0, 1.0)[..., None]
    gradient = (start * (1.0 - t) + end * t) * 255.0
    background = Image.fromarray(gradient.astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(background)
    scale = size / 128.0
    for _ in range(int(rng.integers(0, 3))):
        points = rng.uniform(0, size, size=4)
        colour = tuple(int(c) for c in _tinted(rng, rng.uniform(0.0, 1.0), saturation=0.3) * 255)
        draw.line(list(points), fill=colour, width=max(1, int(round(rng.uniform(1, 3) * scale))))
    for _ in range(int(rng.integers(0, 3))):
        x, y = rng.uniform(0, size, size=2)
        r = rng.uniform(0.02, 0.045) * size
        colour = tuple(int(c) for c in _tinted(rng, rng.uniform(0.0, 1.0), saturation=0.3) * 255)
        if rng.random() < 0.5:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        else:
            draw.rectangle([x - r, y - r, x + r, y + r], fill=colour)
    return background


class ProceduralShapes(Dataset):
    """Built-in procedural dataset: 10 (outline, fill) classes, rendered deterministically on the fly."""

    classes = CLASS_NAMES

    def __init__(
        self,
        num_samples: int,
        seed: int = 0,
        split: str = "train",
        transform: Callable[[Image.Image], Any] | None = None,
        render_size: int = 128,
    ) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if split not in _SPLIT_CODES:
            raise ValueError(f"split must be one of {sorted(_SPLIT_CODES)}, got {split!r}")
        if render_size < 16:
            raise ValueError(f"render_size must be >= 16 pixels, got {render_size}")
        self.num_samples = num_samples
        self.seed = seed
        self.split = split
        self.transform = transform
        self.render_size = render_size
        self._cache: dict[int, tuple[Image.Image, int]] | None = (
            {} if num_samples * render_size * render_size * 3 <= CACHE_BYTES else None
        )

    @property
    def num_classes(self) -> int:
        """Number of classes (10)."""
        return len(CLASS_NAMES)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        cached = self._cache.get(index) if self._cache is not None else None
        if cached is None:
            cached = render_sample(self.seed, self.split, index, self.render_size)
            if self._cache is not None:
                self._cache[index] = cached
        image, label = cached[0].copy(), cached[1]  # a copy: a transform may draw on the image it gets
        if self.transform is not None:
            image = self.transform(image)
        return image, label
