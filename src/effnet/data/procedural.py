"""The built-in procedural image dataset: shapes whose classes also differ by a fine texture.

Every image is rendered on the fly from (seed, split, index), so there are no files and any render size works.
A class is a pair (coarse shape, fine texture): 4 shapes x 3 textures = 12 classes. The textures are drawn with a
period of only a few percent of the image width and all cover half of the object, so once an image is shrunk
below a certain size they average out to the same colour and only the shape is left: low resolutions cap the
accuracy near "shape only" (about a third), and the remaining two thirds need resolution and capacity.
Random position, size, rotation, colours, background gradient, clutter and pixel noise keep it from being
trivially separable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

SHAPES = ("circle", "square", "triangle", "cross")
TEXTURES = ("stripes", "checker", "dots")
CLASS_NAMES = [f"{shape}-{texture}" for shape in SHAPES for texture in TEXTURES]
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

# Texture period as a fraction of the image width: 2.5%-4.5%, i.e. 3.2-5.8 px at 128 px, so at 32 px one
# period spans about one pixel (invisible) and at 64 px about two (partly visible).
_PERIOD_RANGE = (0.025, 0.045)
# Object radius as a fraction of the image width (diameter 22%-40% of the image).
_RADIUS_RANGE = (0.11, 0.20)
# Radius of a dot relative to the lattice period so that the dots cover half the area, like the other textures.
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
    elif texture == "dots":
        fx = x / period - np.floor(x / period) - 0.5
        fy = y / period - np.floor(y / period) - 0.5
        s = (_DOT_RADIUS - np.sqrt(fx * fx + fy * fy)) * period
    else:
        raise AssertionError(texture)
    return np.clip(0.5 + s / px, 0.0, 1.0)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.0, 1.0, size=3).astype(np.float32)


def _object_colours(rng: np.random.Generator, behind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two texture colours far enough apart to see the texture at full resolution, whose average (all that is
    left of the texture at low resolution) stands out from the background behind the object."""
    for _ in range(100):
        a, b = _random_colour(rng), _random_colour(rng)
        if np.abs(a - b).max() > 0.35 and np.abs((a + b) / 2 - behind).max() > 0.3:
            break
    return a, b


def render_sample(seed: int, split: str, index: int, size: int = 128) -> tuple[Image.Image, int]:
    """Render sample `index` of a split: an RGB PIL image of `size` x `size` and its class index."""
    if split not in _SPLIT_CODES:
        raise ValueError(f"split must be one of {sorted(_SPLIT_CODES)}, got {split!r}")
    rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
    label = index % len(CLASS_NAMES)
    shape, texture = SHAPES[label // len(TEXTURES)], TEXTURES[label % len(TEXTURES)]

    background = _draw_background(rng, size)
    image = np.asarray(background, dtype=np.float32) / 255.0

    # Pixel-centre coordinates in units of the image width, origin at the centre.
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    gx, gy = np.meshgrid(coords, coords)
    px = 1.0 / size

    radius = rng.uniform(*_RADIUS_RANGE)
    cx, cy = rng.uniform(-0.45 + radius, 0.45 - radius, size=2)
    angle = rng.uniform(0.0, 2 * math.pi)
    cos, sin = math.cos(angle), math.sin(angle)
    dx, dy = gx - cx, gy - cy
    lx, ly = (cos * dx + sin * dy) / radius, (-sin * dx + cos * dy) / radius
    alpha = np.clip(0.5 - _shape_distance(shape, lx, ly) * radius / px, 0.0, 1.0)

    period = rng.uniform(*_PERIOD_RANGE)
    tex_angle = rng.uniform(0.0, math.pi)
    tc, ts = math.cos(tex_angle), math.sin(tex_angle)
    tx, ty = tc * dx + ts * dy, -ts * dx + tc * dy
    coverage = _texture(texture, tx, ty, period, px)

    weight = alpha.sum()
    behind = (image * alpha[..., None]).sum(axis=(0, 1)) / max(float(weight), 1e-6)
    colour_a, colour_b = _object_colours(rng, behind)
    fill = colour_a[None, None, :] * (1.0 - coverage[..., None]) + colour_b[None, None, :] * coverage[..., None]
    image = image * (1.0 - alpha[..., None]) + fill * alpha[..., None]

    noise = rng.uniform(0.0, 0.06)
    image = image + rng.standard_normal(image.shape, dtype=np.float32) * noise
    image = np.clip(image * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
    return Image.fromarray(image, mode="RGB"), label


def _draw_background(rng: np.random.Generator, size: int) -> Image.Image:
    """A random two-colour gradient with clutter: lines and small solid blobs (never textured)."""
    start, end = _random_colour(rng), _random_colour(rng)
    angle = rng.uniform(0.0, 2 * math.pi)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    gx, gy = np.meshgrid(ramp, ramp)
    t = np.clip(0.5 + (gx - 0.5) * math.cos(angle) + (gy - 0.5) * math.sin(angle), 0.0, 1.0)[..., None]
    gradient = (start * (1.0 - t) + end * t) * 255.0
    background = Image.fromarray(gradient.astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(background)
    scale = size / 128.0
    for _ in range(int(rng.integers(1, 5))):
        points = rng.uniform(0, size, size=4)
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        draw.line(list(points), fill=colour, width=max(1, int(round(rng.uniform(1, 3) * scale))))
    for _ in range(int(rng.integers(0, 3))):
        x, y = rng.uniform(0, size, size=2)
        r = rng.uniform(0.02, 0.045) * size
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if rng.random() < 0.5:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        else:
            draw.rectangle([x - r, y - r, x + r, y + r], fill=colour)
    return background


class ProceduralShapes(Dataset):
    """Built-in procedural dataset: 12 classes of (shape, fine texture), rendered deterministically on the fly."""

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
