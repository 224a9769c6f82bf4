"""Image-folder datasets (one sub-folder per class) that skip and count unreadable images instead of crashing."""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)

_EXIF_ORIENTATION = 0x0112
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


@dataclass(frozen=True)
class EncodedImage:
    """An image file's bytes (uint8 [L]) and its EXIF orientation (1 = as stored): what a worker sends when the
    training device decodes (effnet.data.gpu)."""

    data: torch.Tensor
    orientation: int = 1


def read_encoded(path: str | os.PathLike[str]) -> EncodedImage:
    """The file's bytes and its EXIF orientation, read from the header; nothing is decoded."""
    with open(path, "rb") as file:
        raw = file.read()
    with Image.open(io.BytesIO(raw)) as opened:  # raises for a file that is not an image, as load_rgb would
        orientation = int(opened.getexif().get(_EXIF_ORIENTATION, 1))
    return EncodedImage(torch.frombuffer(bytearray(raw), dtype=torch.uint8), orientation)


# A drafted JPEG keeps twice the pixels its crop needs: the final antialiased resize then does the last 2x or more.
# On cats_vs_dogs at 64 px this moves pixels by 0.66 levels on average (1.81 with no margin), less than choosing
# Lanczos over bicubic does (0.98); benchmarks/draft_decode.py.
DRAFT_MARGIN = 2


def crop_draft_side(size: int, min_scale: float) -> int:
    """The shorter side a JPEG may be decoded down to for RandomResizedCrop at `size` with areas >= min_scale:
    every box (aspect 3/4..4/3) keeps DRAFT_MARGIN x `size` pixels on each side."""
    return DRAFT_MARGIN * math.ceil(size / math.sqrt(0.75 * min_scale))


def eval_draft_side(resize: int) -> int:
    """The shorter side a JPEG may be decoded down to when the eval transform resizes it to `resize`."""
    return DRAFT_MARGIN * resize


def load_rgb(path: str | os.PathLike[str] | io.BytesIO, min_side: int | None = None) -> Image.Image:
    """Decode an image file fully and return it as RGB (alpha composited on white, 16-bit grey rescaled).

    min_side: a JPEG may be decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, PIL's draft mode) as long
    as its shorter side stays >= min_side; other formats always decode in full.
    """
    with Image.open(path) as opened:
        if min_side is not None and opened.format == "JPEG":
            width, height = opened.size
            shorter = min(width, height)
            if shorter >= 2 * min_side:
                opened.draft("RGB", (math.ceil(width * min_side / shorter), math.ceil(height * min_side / shorter)))
        opened.load()
        # Phones store portrait photos as landscape pixels plus an EXIF orientation tag: apply it.
        image: Image.Image = ImageOps.exif_transpose(opened) or opened
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            # 16-bit / float greyscale: PIL's own conversion clips at 255, so rescale to 8 bits explicitly.
            array = np.asarray(image, dtype=np.float32)
            top = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 255.0)
            image = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        if image.mode in ("RGBA", "LA", "PA"):
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return image.convert("RGB")


def _is_readable(path: Path) -> bool:
    """Cheap integrity check: the header parses and (for PNG/GIF etc.) the data checks out."""
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except Exception:  # PIL raises many types (OSError, SyntaxError, ValueError, ...) for bad files
        return False


def list_classes(directory: Path) -> list[str]:
    """Sorted names of the class sub-folders of a directory (hidden folders ignored).

    A class folder that is a link back into the dataset (e.g. `x -> .`) would list images twice under another
    label: refused, naming it.
    """
    names = sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    root = directory.resolve()
    real = {name: (directory / name).resolve() for name in names}
    for name in sorted(names, key=lambda n: not (directory / n).is_symlink()):  # name the link, not its victims
        target = real[name]
        loops = target == root or target in root.parents
        overlaps = [
            other
            for other, path in real.items()
            if other != name and (path == target or path in target.parents or target in path.parents)
        ]
        if loops or overlaps:
            raise ValueError(
                f"class folder {directory / name} is a link to {target}, which overlaps "
                f"{', '.join(overlaps) or 'the dataset itself'}; remove the link so no image counts "
                "twice under another label"
            )
    return names


def scan_class_folders(
    directory: Path, classes: list[str], verify: bool = True, require_each: bool = True
) -> tuple[list[tuple[str, int]], list[str]]:
    """(path, label) of every image under directory/<class>/ (recursively, sorted) and the skipped paths.

    With `require_each`, a class folder without a readable image is a ValueError naming it.
    """
    samples: list[tuple[str, int]] = []
    skipped: list[str] = []
    for label, name in enumerate(classes):
        class_dir = directory / name
        if not class_dir.is_dir():
            continue
        found = len(samples)
        for dirpath, dirnames, filenames in os.walk(class_dir, onerror=_unreadable_folder):
            dirnames.sort()
            _refuse_linked_folders(Path(dirpath), dirnames)
            for filename in sorted(filenames):
                if filename.startswith(".") or not filename.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                path = Path(dirpath) / filename
                _refuse_special_file(path)
                if verify and not _is_readable(path):
                    skipped.append(str(path))
                    continue
                samples.append((str(path), label))
        if require_each and len(samples) == found:  # a class without images: a label nothing teaches
            raise ValueError(f"class folder {class_dir} has no readable images; add some or remove the folder")
    return samples, skipped


# Nothing under a class folder is left out without a word: a folder effnet cannot list or does not follow, or a
# file that is not a regular file (a FIFO named .jpg would block the scan forever), is refused, named.
def _unreadable_folder(error: OSError) -> None:
    raise ValueError(
        f"cannot read the folder {error.filename} ({error.strerror}): its images would be left out; make it "
        "readable or move it out of the dataset"
    )


def _refuse_linked_folders(folder: Path, names: list[str]) -> None:
    for name in names:
        if (folder / name).is_symlink():
            raise ValueError(
                f"{folder / name} is a link to a folder, which effnet does not follow inside a class folder (its "
                "images would be left out); put the images there or link the class folder itself"
            )


def _refuse_special_file(path: Path) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # a dangling link or an unreadable file: skipped and counted like any unreadable image
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path} is not a regular file (a pipe, socket or device); remove it from the dataset")


def split_samples(
    samples: list[tuple[str, int]], val_fraction: float, seed: int, root: Path
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Deterministic per-class split: files ordered by a hash of (seed, relative path), the first ones go to val.

    Hashing paths rather than shuffling positions makes the split independent of how the file system lists
    files, and the same on every machine.
    """

    def key(sample: tuple[str, int]) -> str:
        relative = os.path.relpath(sample[0], root).replace(os.sep, "/")
        # surrogateescape: file names that are not valid UTF-8 still hash (and split) like any other.
        return hashlib.sha256(f"{seed}:{relative}".encode(errors="surrogateescape")).hexdigest()

    by_label: dict[int, list[tuple[str, int]]] = {}
    for sample in samples:
        by_label.setdefault(sample[1], []).append(sample)
    val_paths: set[str] = set()
    for members in by_label.values():
        num_val = int(round(len(members) * val_fraction))
        if len(members) >= 2:
            num_val = min(max(num_val, 1), len(members) - 1)  # both sides keep every class
        else:
            num_val = 0
        val_paths.update(path for path, _ in sorted(members, key=key)[:num_val])
    # Both lists keep the scan order (class by class, files sorted).
    return [s for s in samples if s[0] not in val_paths], [s for s in samples if s[0] in val_paths]


class ImageFolderDataset(Dataset):
    """(path, label) samples decoded to RGB on access; a file that fails to decode is replaced and counted."""

    def __init__(
        self,
        samples: list[tuple[str, int]],
        classes: list[str],
        transform: Callable[[Image.Image], Any] | None = None,
        skipped: list[str] | None = None,
    ) -> None:
        if not samples:
            raise ValueError("an image folder dataset needs at least one readable image")
        self.samples = list(samples)
        self.classes = list(classes)
        self.transform = transform
        self.skipped_files = list(skipped or [])  # found unreadable when the folder was scanned
        # Found unreadable at load time, in this process: each DataLoader worker keeps (and logs) its own.
        self._unreadable: set[int] = set()
        # True: samples are the files' bytes (EncodedImage), decoded later on the training device; no transform.
        self.encoded = False
        # JPEGs may decode at reduced size down to this shorter side (see load_rgb); None: always in full.
        self.draft_min_side: int | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def load_failures(self) -> int:
        """Files that passed the scan but failed to decode when loaded, in this process."""
        return len(self._unreadable)

    @property
    def num_skipped(self) -> int:
        """Unreadable images: skipped when scanning plus replaced at load time in this process."""
        return len(self.skipped_files) + self.load_failures

    @property
    def targets(self) -> list[int]:
        """Label of every sample, in order."""
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        # A file can pass the scan and still fail to decode (e.g. truncated JPEG data): use the next readable
        # sample instead, deterministically, so one bad file never stops a DataLoader worker.
        for offset in range(len(self.samples)):
            position = (index + offset) % len(self.samples)
            if position in self._unreadable:
                continue
            path, label = self.samples[position]
            try:
                if self.encoded:
                    return read_encoded(path), label
                image = load_rgb(path, self.draft_min_side)
            except Exception as error:  # any decode failure means "skip this file"
                self._unreadable.add(position)
                logger.warning(
                    "skipping unreadable image %s (%s: %s); %d found at load time in this process",
                    path,
                    type(error).__name__,
                    error,
                    len(self._unreadable),
                )
                continue
            if self.transform is not None:
                image = self.transform(image)
            return image, label
        raise RuntimeError(f"none of the {len(self.samples)} images could be decoded")
