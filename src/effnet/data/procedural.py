"""The built-in procedural image dataset: objects filled with a coarse pattern whose bands hold a fine texture.

Every image is rendered on the fly from (seed, split, index), so there are no files and any render size works.
A class is a pair (coarse pattern, fine texture): 4 x 3 = 12 classes. The coarse pattern (stripes, checker,
dots or rings, periods of 12-26% of the image width) stays visible at 32 px. Its bands are filled with a fine
texture (stripes, checker or dots, periods of 2.5-8.5% of the width) that covers half of its area, so as the
image is shrunk every fine texture fades to the same flat colour: at 32 px mostly the coarse pattern is left,
and telling the textures apart needs resolution (64-96 px) and capacity.
Both patterns scale together, so random crops keep the class. The object's outline (circle, square, triangle
or cross), position, size, rotations, colours, background gradient, clutter and pixel noise are nuisances.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

SHAPES = ("circle", "square", "triangle", "cross")
COARSE_PATTERNS = ("stripes", "checker", "dots", "rings")
TEXTURES = ("stripes", "checker", "dots")
CLASS_NAMES = [f"{coarse}/{fine}" for coarse in COARSE_PATTERNS for fine in TEXTURES]
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

# Periods as fractions of the image width. Fine: 3.2-7.7 px at 128 px. Shrunk to 32 px the finest are gone and
# the coarsest keep about half their contrast; at 64 px most are visible, at 96 px all (tests/test_data.py checks
# this), so accuracy keeps rising with resolution. The checker's cells are half a period and its strongest
# frequency runs along the diagonal, so it gets periods sqrt(2) longer to be as fine as the stripes and dots.
_FINE_PERIODS = {"stripes": (0.025, 0.06), "checker": (0.035, 0.085), "dots": (0.025, 0.06)}
# Coarse: at least ~4 px at 32 px, so the coarse pattern survives the smallest training resolutions.
_COARSE_PERIODS = {"stripes": (0.12, 0.16), "checker": (0.2, 0.26), "dots": (0.14, 0.18), "rings": (0.12, 0.16)}
# Object radius as a fraction of the image width (diameter 44%-68% of the image).
_RADIUS_RANGE = (0.22, 0.34)
# Radius of a dot relative to the lattice period so that the dots cover half the area, like the other patterns.
_DOT_RADIUS = math.sqrt(0.5 / math.pi)


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
    if shape == "cross":
        arm = 0.36
        return np.minimum(np.maximum(np.abs(x) - arm, np.abs(y) - 1.0), np.maximum(np.abs(x) - 1.0, np.abs(y) - arm))
    raise AssertionError(shape)


def _texture(texture: str, x: np.ndarray, y: np.ndarray, period: float, px: float) -> np.ndarray:
    """Coverage in [0, 1] of the second colour; `px` is one pixel in the same units, for a 1-pixel soft edge."""
    if texture == "stripes":
        s = np.sin(2 * math.pi * x / period) * (period / (2 * math.pi))
    elif texture == "checker":
        sx = np.sin(2 * math.pi * x / period) * (period / (2 * math.pi))
        sy = np.sin(2 * math.pi * y / period) * (period / (2 * math.pi))
        # Distance-like: the smaller of the two distances to a cell edge, signed by the cell's colour.
        s = np.sign(sx * sy) * np.minimum(np.abs(sx), np.abs(sy))
    elif texture == "rings":  # concentric around the object's centre (the origin of x, y)
        s = np.sin(2 * math.pi * np.sqrt(x * x + y * y) / period) * (period / (2 * math.pi))
    elif texture == "dots":
        fx = x / period - np.floor(x / period) - 0.5
        fy = y / period - np.floor(y / period) - 0.5
        s = (_DOT_RADIUS - np.sqrt(fx * fx + fy * fy)) * period
    else:
        raise AssertionError(texture)
    return np.clip(0.5 + s / px, 0.0, 1.0)


def _tinted(rng: np.random.Generator, lightness: float, saturation: float = 0.15) -> np.ndarray:
    """A random, muted hue at a given lightness. Patterns are drawn in lightness, as in natural images: with
    fully random colours a small net needs many times more steps before it learns colour-invariant features."""
    hue = rng.uniform(-1.0, 1.0, size=3).astype(np.float32)
    hue -= hue.mean()
    return np.clip(lightness + rng.uniform(0.0, saturation) * hue, 0.0, 1.0)


def _object_colours(rng: np.random.Generator, behind: np.ndarray) -> tuple[np.ndarray, ...]:
    """Colour of the plain bands and the two colours of the fine texture. The texture's two colours differ in
    lightness (visible at full resolution) and their average, all that is left of them at low resolution,
    differs in lightness from the plain bands, so the coarse pattern shows at 32 px."""
    mix = rng.uniform(0.3, 0.7)
    spread = rng.uniform(0.2, 0.3)
    # The plain bands go to whichever side of the texture's average has room, away from the background.
    side = 1.0 if float(behind.mean()) < 0.5 else -1.0
    if rng.random() < 0.3:
        side = -side
    plain = float(np.clip(mix + side * rng.uniform(0.3, 0.45), 0.0, 1.0))
    if abs(plain - mix) < 0.25:
        plain = float(np.clip(mix - side * rng.uniform(0.3, 0.45), 0.0, 1.0))
    return _tinted(rng, plain), _tinted(rng, mix - spread), _tinted(rng, mix + spread)


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
    coarse, fine = COARSE_PATTERNS[label // len(TEXTURES)], TEXTURES[label % len(TEXTURES)]
    shape = SHAPES[int(rng.integers(len(SHAPES)))]

    image = np.asarray(_draw_background(rng, size), dtype=np.float32) / 255.0  # a writable copy

    radius = rng.uniform(*_RADIUS_RANGE)
    cx, cy = rng.uniform(-0.5 + 0.8 * radius, 0.5 - 0.8 * radius, size=2)
    # Only the object's bounding box is computed (every shape lies within 1.15 radii of its centre): the
    # pattern fields are most of the rendering cost.
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
    bands = _texture(coarse, *_rotated(rng, dx, dy), rng.uniform(*_COARSE_PERIODS[coarse]), px)[..., None]
    texture = _texture(fine, *_rotated(rng, dx, dy), rng.uniform(*_FINE_PERIODS[fine]), px)[..., None]

    region = image[y0:y1, x0:x1]
    behind = (region * alpha).sum(axis=(0, 1)) / max(float(alpha.sum()), 1e-6)
    plain, fine_a, fine_b = _object_colours(rng, behind)
    textured = fine_a * (1.0 - texture) + fine_b * texture
    fill = plain * (1.0 - bands) + textured * bands
    image[y0:y1, x0:x1] = region * (1.0 - alpha) + fill * alpha

    noise = rng.uniform(0.0, 0.06)
    image = image + rng.standard_normal(image.shape, dtype=np.float32) * noise
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
    """Built-in procedural dataset: 12 (coarse pattern, fine texture) classes, rendered deterministically on the fly."""

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

    @property
    def num_classes(self) -> int:
        """Number of classes (12)."""
        return len(CLASS_NAMES)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        image, label = render_sample(self.seed, self.split, index, self.render_size)
        if self.transform is not None:
            image = self.transform(image)
        return image, label
