"""Where a model comes from: one `ModelSource` (what --model, --pretrained, --weights, --classes-file, --padding,
--norm-eps and the preprocessing flags say) and one `load_source`, for every command, the server and training.

The rules live here once: pretrained weights or a weight file, not both; a pretrained tag belongs to its model; a
classes file is UTF-8 text with one name per line, as many as the model has outputs; preprocessing overrides are
fields of `Preprocess`. Exported graphs (.onnx, OpenVINO .xml) are named here too, but run on their runtimes
(`effnet.deploy.runtimes.open_exported`, the server's classifiers), which take `fallback_preprocess` and
`class_names` from the source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# One reader of class lists for every command and the server (UTF-8, a regular file, printable names, the count).
from effnet._util.filecheck import read_class_list as read_classes_file
from effnet.models.catalog import resolve_spec
from effnet.models.net import EfficientNet
from effnet.preprocess import Preprocess, default_preprocess
from effnet.weights.loader import load_model
from effnet.weights.pretrained import PretrainedRecord, get_pretrained, imagenet_classes
from effnet.weights.reader import WeightFile, read_file

DEFAULT_MODEL = "efficientnet_lite0"
PREPROCESS_OVERRIDES = ("input_size", "crop_pct", "resize_mode", "interpolation", "mean", "std")
EXPORTED_SUFFIXES = (".onnx", ".xml")  # graphs `effnet export` writes: ONNX, OpenVINO IR


def check_one_source(pretrained: bool | str, weights: str | Path | None) -> None:
    """Refuse pretrained weights and a weight file together: they would be two answers to one question."""
    if pretrained and weights:
        raise ValueError("give either pretrained weights (--pretrained) or a weight file (--weights FILE), not both")


def pretrained_record(name: str, tag: bool | str = True) -> PretrainedRecord:
    """The pretrained record of `name` ("model" or timm-style "model.tag"), or of its tag `tag` when a string;
    a tag of another model is refused."""
    record = get_pretrained(name, tag if isinstance(tag, str) else None)
    if record.model != name.split(".", 1)[0]:
        raise ValueError(f"pretrained tag {record.name} is for {record.model}, not {name}")
    return record


@dataclass(frozen=True)
class ModelSource:
    """Which model: a registry name or spec file, with pretrained weights, a weight file, a save_pretrained folder
    or an exported graph, plus class names and preprocessing overrides. Plain values, so it travels as JSON."""

    model: str | None = None  # None: the file's own architecture, or efficientnet_lite0
    pretrained: bool | str = False  # True: the model's default record; a string: that tag
    weights: str | None = None  # effnet .safetensors / checkpoint, timm / torchvision file, folder, .onnx / .xml
    classes_file: str | None = None  # class names, one per line
    padding: str | None = None  # "same" / norm_eps 1e-3 for TF-trained files that do not record them
    norm_eps: float | None = None
    # Preprocessing overrides as (field, value) pairs, e.g. (("input_size", 256),); the model's own otherwise.
    preprocess: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not self.is_exported:  # an exported graph may borrow a pretrained record's preprocessing
            check_one_source(self.pretrained, self.weights)
        unknown = [key for key, _ in self.preprocess if key not in PREPROCESS_OVERRIDES]
        if unknown:
            raise ValueError(f"unknown preprocessing override(s) {unknown}; choose from {PREPROCESS_OVERRIDES}")

    @property
    def model_name(self) -> str:
        """The registry name or spec file to build (efficientnet_lite0 unless given)."""
        return self.model or DEFAULT_MODEL

    @property
    def is_onnx(self) -> bool:
        """True when the weights file is an ONNX graph."""
        return self.weights is not None and self.weights.lower().endswith(".onnx")

    @property
    def is_openvino(self) -> bool:
        """True when the weights file is an OpenVINO IR .xml."""
        return self.weights is not None and self.weights.lower().endswith(".xml")

    @property
    def is_exported(self) -> bool:
        """True for a graph `effnet export` wrote (ONNX or OpenVINO IR), which carries its own preprocessing."""
        return self.is_onnx or self.is_openvino

    def describe(self) -> str:
        """Where the weights come from, in a few words (a file's name, not the folders around it)."""
        if self.weights is not None:
            return os.path.basename(os.path.normpath(self.weights))
        return f"{self.model_name} pretrained" if self.pretrained else f"{self.model_name} random weights"

    def record(self) -> PretrainedRecord:
        """The pretrained record this source names (its model's default one, or the tag given)."""
        return pretrained_record(self.model_name, self.pretrained)

    def starting_weights(self) -> WeightFile | PretrainedRecord | None:
        """The weights before any model is built: the pretrained record, the weight file read once, or None."""
        if self.is_exported:
            raise ValueError(
                f"{self.weights} is an exported graph, which holds no trainable weights: pass the .safetensors or "
                "checkpoint it was exported from"
            )
        if self.pretrained:
            return self.record()
        return read_file(self.weights) if self.weights else None

    def apply_preprocess(self, preprocess: Preprocess) -> Preprocess:
        """`preprocess` with this source's overrides; a crop fraction the resize mode would ignore is refused."""
        overrides = dict(self.preprocess)
        result = replace(preprocess, **overrides) if overrides else preprocess
        if "crop_pct" in overrides and result.resize_mode == "squash":
            raise ValueError(
                "--crop-pct would be ignored: squash mode resizes the whole image to --input-size without a crop; "
                "pass --resize-mode crop with it, or drop --crop-pct"
            )
        return result

    def fallback_preprocess(self) -> Preprocess:
        """For an exported graph that records no preprocessing: the pretrained record's, else the model's."""
        return self.record().preprocess if self.pretrained else default_preprocess(resolve_spec(self.model_name))

    def class_names(self, num_classes: int, recorded: tuple[str, ...] | list[str] | None) -> list[str] | None:
        """--classes-file, else the names the weights carry, else ImageNet-1k's for 1000 outputs, else None."""
        if self.classes_file:
            return read_classes_file(self.classes_file, num_classes)  # UTF-8, printable, the count
        if recorded and len(recorded) == num_classes:
            return list(recorded)
        return list(imagenet_classes()) if num_classes == 1000 else None


def load_source(source: ModelSource, *, random_ok: bool = False) -> EfficientNet:
    """The PyTorch model `source` names, in eval mode, with the preprocessing its weights carry and the source's
    overrides; random weights only when `random_ok`. Class names: `source.class_names(model.num_classes, ...)`."""
    if source.is_exported:
        raise ValueError(
            f"{source.weights} is an exported graph: open it with effnet.deploy.runtimes.open_exported, "
            "or pass the .safetensors or checkpoint it was exported from"
        )
    if source.weights is not None and Path(source.weights).is_dir():
        model = _load_folder(Path(source.weights))
    elif source.pretrained:  # the record brings its padding, BN eps, preprocessing and class names
        model = load_model(source.record())
    elif source.weights is not None:
        model = load_model(source.weights, source.model, padding=source.padding, norm_eps=source.norm_eps)
    elif random_ok:
        settings = {"padding": source.padding, "norm_eps": source.norm_eps}
        spec = resolve_spec(source.model_name).replace(**{k: v for k, v in settings.items() if v is not None})
        model = EfficientNet(spec, num_classes=1000)
    else:
        raise ValueError(
            f"{source.model_name} has random weights: pass --pretrained (see `effnet models --pretrained`) or "
            "--weights FILE (weights, checkpoint, save_pretrained folder or exported .onnx / .xml)"
        )
    model.preprocess = source.apply_preprocess(model.preprocess)
    return model.eval()


def _load_folder(folder: Path) -> EfficientNet:
    """A folder written by `save_pretrained` (effnet's or timm's); any other folder is a one-line mistake."""
    if (folder / "config.json").is_file():
        from effnet.weights.hf import from_pretrained  # needs the optional huggingface_hub

        return from_pretrained(folder)
    inside = sorted(
        p.name for p in folder.iterdir() if p.suffix.lower() in (".safetensors", ".pt", ".pth", ".onnx", ".xml")
    )
    hint = f" (it holds {', '.join(inside[:3])})" if inside else ""
    raise ValueError(
        f"{folder} is a folder, not a weight file{hint}: pass the file itself, or a folder written by "
        "save_pretrained (config.json + model.safetensors)"
    )


__all__ = [
    "DEFAULT_MODEL",
    "PREPROCESS_OVERRIDES",
    "ModelSource",
    "check_one_source",
    "load_source",
    "pretrained_record",
    "read_classes_file",
]
