"""Classify image files with a model's own preprocessing, in batches, reporting unreadable files one by one."""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from effnet.data.folder import IMAGE_EXTENSIONS, load_rgb
from effnet.models.net import EfficientNet
from effnet.preprocess import Preprocess, normalize, preprocess_transform


@dataclass(frozen=True)
class ClassScore:
    """One of the top-k classes of an image."""

    index: int
    name: str
    probability: float


@dataclass(frozen=True)
class Prediction:
    """The top-k classes of one image, or why it could not be classified."""

    path: str
    top: tuple[ClassScore, ...] = field(default=())
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "top": [vars(score) for score in self.top]}


def collect_images(inputs: Sequence[str | Path], recursive: bool = True) -> list[Path]:
    """Expand files, folders (images inside, sorted) and glob patterns into a list of paths.

    Explicit files are kept whatever their suffix, so that a broken file is reported rather than skipped.
    """
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            paths += sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        elif path.is_file():
            paths.append(path)
        elif path.exists():  # a FIFO, socket or device: opening it would block or never end
            raise ValueError(f"{item} is not a regular file (a pipe, socket or device); give an image file")
        elif any(char in str(item) for char in "*?["):
            paths += sorted(Path(p) for p in glob.glob(str(item), recursive=True) if Path(p).is_file())
        else:
            raise ValueError(f"{item} is not a file, a folder or a glob pattern that matches anything")
    if not paths:
        raise ValueError(f"no images found in {', '.join(map(str, inputs))} (suffixes: {' '.join(IMAGE_EXTENSIONS)})")
    return list(dict.fromkeys(paths))  # drop duplicates, keep order


def load_image(path: str | Path) -> Image.Image:
    """Open an image as RGB; decoding happens here so corrupt files fail now, not later in a batch."""
    return load_rgb(path)


def to_normalized_tensor(image: Image.Image, preprocess: Preprocess) -> torch.Tensor:
    """(3, H, W) float tensor scaled to [0, 1] then normalized with the preprocess mean/std."""
    return normalize(preprocess.mean, preprocess.std)(image)


def preprocess_image(image: Image.Image, preprocess: Preprocess) -> torch.Tensor:
    """The model's eval preprocessing (resize + center crop, or squash), then normalize."""
    return preprocess_transform(preprocess)(image)


def top_classes(logits: torch.Tensor, k: int, class_names: Sequence[str] | None = None) -> list[tuple[ClassScore, ...]]:
    """The `k` most probable classes of each row of (N, classes) logits, highest first, with softmax
    probabilities and names (the index as text where none is known): the one top-k of predict and the server."""
    probs = logits.float().softmax(dim=1)
    values, indices = probs.topk(min(k, probs.shape[1]), dim=1)
    rows = []
    for row_values, row_indices in zip(values.tolist(), indices.tolist(), strict=True):
        rows.append(
            tuple(
                ClassScore(i, class_names[i] if class_names and i < len(class_names) else str(i), p)
                for i, p in zip(row_indices, row_values, strict=True)
            )
        )
    return rows


@torch.inference_mode()
def classify(
    model: EfficientNet, images: Sequence[Image.Image], top_k: int = 5, class_names: Sequence[str] | None = None
) -> list[tuple[ClassScore, ...]]:
    """Top-k classes of in-memory PIL images, using `model.preprocess` (and `model.class_names` by default).

    `model` is an EfficientNet or an exported file opened by `effnet.deploy.runtimes.open_exported`.
    """
    preprocess: Preprocess = model.preprocess
    class_names = class_names if class_names is not None else getattr(model, "class_names", None)
    device = next(model.parameters(), torch.empty(0)).device  # an exported graph (runtimes.ExportedModel) has none
    batch = torch.stack([preprocess_image(image.convert("RGB"), preprocess) for image in images]).to(device)
    return top_classes(model.eval()(batch), top_k, class_names)


def predict_files(
    model: EfficientNet,
    paths: Sequence[str | Path],
    *,
    top_k: int = 5,
    batch_size: int = 16,
    class_names: Sequence[str] | None = None,
) -> Iterator[Prediction]:
    """Yield one Prediction per path, in order; files that fail to load get a Prediction with `error` set."""
    if batch_size < 1 or top_k < 1:
        raise ValueError(f"batch_size and top_k must be >= 1, got {batch_size} and {top_k}")
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        results: dict[int, Prediction] = {}
        images, positions = [], []
        for i, path in enumerate(chunk):
            try:
                images.append(load_image(path))
                positions.append(i)
            except (OSError, ValueError, Image.DecompressionBombError) as err:
                results[i] = Prediction(str(path), error=f"{type(err).__name__}: {err}")
        if images:
            for i, top in zip(positions, classify(model, images, top_k, class_names), strict=True):
                results[i] = Prediction(str(chunk[i]), top)
        yield from (results[i] for i in range(len(chunk)))
