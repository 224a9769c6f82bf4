"""Data configuration and the single entry point that builds a (train, val) dataset pair from it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from effnet._util.validation import MAX_SIDE, check_field_types, check_range, data_seed, positive_int, whole_number
from effnet.data.cifar import load_cifar
from effnet.data.folder import ImageFolderDataset, list_classes, scan_class_folders, split_samples
from effnet.data.procedural import CLASS_NAMES, ProceduralShapes

logger = logging.getLogger(__name__)

DATASET_NAMES = ("shapes", "folder", "cifar10", "cifar100")
_RENDER_SIZE = whole_number(8, MAX_SIDE)


@dataclass(frozen=True)
class DataConfig:
    """Which data to train and validate on; everything is local, nothing is downloaded."""

    name: str = "shapes"  # "shapes" (built-in procedural) | "folder" | "cifar10" | "cifar100"
    root: str | None = None  # folder / CIFAR location (CIFAR: the extracted python-format dir)
    num_train: int = 5000  # shapes only
    num_val: int = 1000  # shapes only
    val_fraction: float = 0.1  # folder without a val/ sub-folder: deterministic split
    seed: int = 0
    render_size: int = 128  # shapes only: pixels each image is drawn at before the transforms resize it
    verify_images: bool = True  # folder only: check every file when scanning (unreadable ones are skipped)

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.name not in DATASET_NAMES:
            raise ValueError(f"unknown dataset {self.name!r}; choose one of {', '.join(DATASET_NAMES)}")
        if self.name != "shapes" and not self.root:
            raise ValueError(f"dataset {self.name!r} needs a root folder (data root / --data-root)")
        if self.num_train < 1 or self.num_val < 1:
            raise ValueError(f"num_train and num_val must be >= 1, got {self.num_train}, {self.num_val}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be strictly between 0 and 1, got {self.val_fraction}")
        if self.render_size < 8 or self.seed < 0:
            raise ValueError(f"render_size must be >= 8 and seed >= 0, got {self.render_size}, {self.seed}")
        # The flags' own ranges (--num-train, --data-seed), so a YAML file cannot ask for more than a flag can.
        check_range(self.num_train, "num_train", positive_int)
        check_range(self.num_val, "num_val", positive_int)
        check_range(self.seed, "seed", data_seed)
        check_range(self.render_size, "render_size", _RENDER_SIZE)


@dataclass(frozen=True)
class DatasetPair:
    """Train and val datasets (transform attributes unset: assign them) with the class list."""

    train: Dataset
    val: Dataset
    num_classes: int
    class_names: list[str]


def build_datasets(config: DataConfig) -> DatasetPair:
    """Build the train and val datasets described by `config`; set `.transform` on each before use."""
    if config.name == "shapes":
        train = ProceduralShapes(config.num_train, config.seed, "train", render_size=config.render_size)
        val = ProceduralShapes(config.num_val, config.seed, "val", render_size=config.render_size)
        return DatasetPair(train, val, len(CLASS_NAMES), list(CLASS_NAMES))
    assert config.root is not None  # checked in DataConfig
    if config.name in ("cifar10", "cifar100"):
        cifar_train, cifar_test, classes = load_cifar(config.root, config.name)
        return DatasetPair(cifar_train, cifar_test, len(classes), classes)
    return _build_folder(config)


def _build_folder(config: DataConfig) -> DatasetPair:
    root = Path(config.root or "")
    if not root.is_dir():
        raise ValueError(f"data root {root} does not exist or is not a folder")
    train_dir, val_dir = root / "train", root / "val"
    has_split_dirs = train_dir.is_dir()
    class_root = train_dir if has_split_dirs else root
    classes = list_classes(class_root)
    if not classes:
        raise ValueError(
            f"no class sub-folders in {class_root}: expected {root}/train/<class>/*, {root}/val/<class>/* "
            f"or {root}/<class>/*"
        )
    train_samples, train_skipped = scan_class_folders(class_root, classes, config.verify_images)
    if has_split_dirs and val_dir.is_dir():
        unknown = sorted(set(list_classes(val_dir)) - set(classes))
        if unknown:
            raise ValueError(f"{val_dir} has classes missing from {train_dir}: {', '.join(unknown)}")
        val_samples, val_skipped = scan_class_folders(val_dir, classes, config.verify_images, require_each=False)
    else:
        train_samples, val_samples = split_samples(train_samples, config.val_fraction, config.seed, class_root)
        val_skipped = []
    skipped = len(train_skipped) + len(val_skipped)
    if skipped:
        examples = ", ".join((train_skipped + val_skipped)[:3])
        logger.warning("skipped %d unreadable image(s) under %s: %s", skipped, root, examples)
    if not train_samples or not val_samples:
        raise ValueError(
            f"{root} has too few readable images for a train and a val split "
            f"({len(train_samples)} train, {len(val_samples)} val)"
        )
    train = ImageFolderDataset(train_samples, classes, skipped=train_skipped)
    val = ImageFolderDataset(val_samples, classes, skipped=val_skipped)
    return DatasetPair(train, val, len(classes), classes)
