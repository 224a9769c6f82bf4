"""CIFAR-10 / CIFAR-100 from their standard python-format batches in a local folder (nothing is downloaded)."""

from __future__ import annotations

import codecs
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from effnet._util.filecheck import regular_file

try:  # numpy >= 2 moved the pickle helpers to numpy._core; old pickles still name numpy.core
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

_LAYOUTS = {
    # name: (folder, train files, test files, meta file, label key, class-name key)
    "cifar10": (
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "batches.meta",
        "labels",
        "label_names",
    ),
    "cifar100": ("cifar-100-python", ("train",), ("test",), "meta", "fine_labels", "fine_label_names"),
}

# The only callables a CIFAR batch needs to be rebuilt: numpy arrays and dtypes. Anything else is refused,
# so a tampered file cannot run code the way an unrestricted pickle.load could.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,  # type: ignore[attr-defined]
    ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,  # type: ignore[attr-defined]
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Python 3 writes bytes this way in protocol 2 (files re-saved from Python 3); it only turns text into bytes.
    ("_codecs", "encode"): codecs.encode,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")


def safe_load_batch(path: Path) -> dict[str, Any]:
    """Load one CIFAR pickle allowing only numpy arrays; keys come back as str (py2 files store bytes)."""
    with open(regular_file(path, "CIFAR batch"), "rb") as handle:
        data = handle.read()
    try:
        raw = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as err:  # a refused callable, or bytes that are not a pickle
        raise ValueError(f"{path} is not a CIFAR batch effnet can read safely ({err})") from None
    except Exception as err:  # noqa: BLE001 - a truncated or garbled pickle raises EOFError, ValueError, ...
        raise ValueError(f"{path} is damaged: not a whole CIFAR batch ({type(err).__name__}: {err})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path} is not a CIFAR batch (expected a dict, got {type(raw).__name__})")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


class ArrayImageDataset(Dataset):
    """In-memory uint8 images [N, H, W, 3] with int labels, handed to `transform` as RGB PIL images."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        classes: list[str],
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"expected images [N, H, W, 3] and N labels, got {images.shape}, {labels.shape}")
        self.images = images
        self.labels = labels.astype(np.int64)
        self.classes = list(classes)
        self.transform = transform

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def targets(self) -> list[int]:
        """Label of every sample, in order."""
        return self.labels.tolist()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image: Any = Image.fromarray(self.images[index], mode="RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


def _resolve_root(root: Path, folder: str, needed: list[str]) -> Path:
    """Accept the extracted folder itself or its parent."""
    for candidate in (root, root / folder):
        if all((candidate / name).is_file() for name in needed):
            return candidate
    missing = [name for name in needed if not (root / name).is_file()]
    raise ValueError(
        f"{root} is not a {folder} folder: missing {', '.join(missing)}. Extract the python version of the "
        f"dataset (e.g. {folder}.tar.gz) and pass the '{folder}' folder (or its parent) as the data root."
    )


def _load_split(directory: Path, files: tuple[str, ...], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in files:
        batch = safe_load_batch(directory / name)
        if "data" not in batch or label_key not in batch:
            raise ValueError(f"{directory / name} lacks the 'data' / '{label_key}' entries of a CIFAR batch")
        data, label = batch["data"], batch[label_key]
        # Each row is 1024 red, 1024 green, then 1024 blue values of a 32x32 image, row-major.
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(
                f"{directory / name}: 'data' must be uint8 rows of 3072 values (32x32 RGB), got "
                f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}"
            )
        if not isinstance(label, (list, np.ndarray)) or len(label) != len(data):
            raise ValueError(f"{directory / name}: '{label_key}' must list one label per image ({len(data)})")
        try:
            labels.append(np.asarray(label, dtype=np.int64))
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{directory / name}: '{label_key}' must be whole numbers") from None
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def load_cifar(root: str | Path, name: str) -> tuple[ArrayImageDataset, ArrayImageDataset, list[str]]:
    """(train, test, class names) of "cifar10" or "cifar100" from a local python-format folder."""
    if name not in _LAYOUTS:
        raise ValueError(f"CIFAR name must be one of {sorted(_LAYOUTS)}, got {name!r}")
    folder, train_files, test_files, meta_file, label_key, names_key = _LAYOUTS[name]
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"CIFAR root {root} does not exist; pass the extracted '{folder}' folder")
    directory = _resolve_root(root, folder, [*train_files, *test_files, meta_file])
    meta = safe_load_batch(directory / meta_file)
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta.get(names_key, [])]
    train_images, train_labels = _load_split(directory, train_files, label_key)
    test_images, test_labels = _load_split(directory, test_files, label_key)
    expected = 10 if name == "cifar10" else 100
    if len(classes) != expected:
        raise ValueError(
            f"{directory / meta_file} lists {len(classes)} class names under '{names_key}', expected {expected}"
        )
    top = int(max(train_labels.max(), test_labels.max()))
    if top >= expected or min(train_labels.min(), test_labels.min()) < 0:
        raise ValueError(f"labels in {directory} fall outside 0..{expected - 1}")
    return (
        ArrayImageDataset(train_images, train_labels, classes),
        ArrayImageDataset(test_images, test_labels, classes),
        classes,
    )
