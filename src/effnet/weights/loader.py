"""The one loader: a ready model from anything `read_file` reads, with the settings the weights need."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from effnet.models.catalog import resolve_spec
from effnet.models.net import EfficientNet
from effnet.models.specs import NetSpec
from effnet.preprocess import Preprocess
from effnet.weights.io import load_state_dict
from effnet.weights.pretrained import PRETRAINED, PretrainedRecord, sha256sum
from effnet.weights.reader import WeightFile, read_file

# torchvision ported its B5-B7 weights from TensorFlow (BN eps 1e-3); its B0-B4 were trained in PyTorch (1e-5).
_TORCHVISION_TF_PORTS = ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7")


def layer_settings(weights: WeightFile | PretrainedRecord, spec: NetSpec) -> tuple[str, float]:
    """(padding, BN eps) the weights were trained with: a pretrained record's, recorded in the file, or known for
    the file's layout. The one place these are decided, for the loader and for training's spec."""
    if isinstance(weights, PretrainedRecord):
        return weights.padding, weights.norm_eps
    file = weights
    if file.spec is not None:
        return file.spec.padding, file.spec.norm_eps
    if file.layout == "efficientnet-pytorch":  # ports of the TF checkpoints
        return "same", 1e-3
    if file.layout == "torchvision":
        return "symmetric", 1e-3 if spec.is_v2 or spec.name in _TORCHVISION_TF_PORTS else 1e-5
    if file.layout == "timm":
        # timm's own V1 / Lite weights use PyTorch's defaults; the only timm V2 weights for these specs are the
        # TF ports (tf_efficientnetv2_*). timm's tf_efficientnet_* V1 ports need padding="same", norm_eps=1e-3.
        return ("same", 1e-3) if spec.is_v2 else ("symmetric", 1e-5)
    return spec.padding, spec.norm_eps


def _known_record(file: WeightFile) -> PretrainedRecord | None:
    """The pretrained record whose file this is, for a PyPI package's file passed by path (matched by sha256)."""
    if file.kind != "state_dict" or file.layout != "efficientnet-pytorch":  # the layout of the PyPI records
        return None
    digest = sha256sum(file.path)
    return next((record for record in PRETRAINED.values() if record.sha256 == digest), None)


def _resolve(file: WeightFile, model: str | Path | NetSpec | None) -> NetSpec:
    if model is None:
        if file.spec is None:
            raise ValueError(
                f"{file.path} ({file.layout} layout) does not record its architecture; pass the model name or spec "
                "file (load_model(path, 'efficientnet_b0'), create_model(name, weights=path), or --model)"
            )
        return file.spec
    return resolve_spec(model)


def _finished_spec(
    file: WeightFile,
    record: PretrainedRecord | None,
    model: str | Path | NetSpec | None,
    padding: str | None,
    norm_eps: float | None,
    drop_rate: float | None,
    drop_path_rate: float | None,
) -> NetSpec:
    """The spec the weights load into: `model`'s or the file's, with the padding and BN eps the weights were
    trained with unless given, and the dropout and drop path rate given."""
    spec = _resolve(file, model)
    saved_padding, saved_eps = layer_settings(record or file, spec)
    changes = {
        "padding": padding or saved_padding,
        "norm_eps": saved_eps if norm_eps is None else norm_eps,
        "dropout": drop_rate,
        "drop_path_rate": drop_path_rate,
    }
    return spec.replace(**{key: value for key, value in changes.items() if value is not None})


def load_model(
    source: str | Path | WeightFile | PretrainedRecord,
    model: str | Path | NetSpec | None = None,
    *,
    num_classes: int | None = None,
    reset_classifier: bool = False,
    use_ema: bool = True,
    padding: str | None = None,
    norm_eps: float | None = None,
    drop_rate: float | None = None,
    drop_path_rate: float | None = None,
    preprocess: Preprocess | None = None,
    class_names: Sequence[str] | None = None,
    strict: bool = True,
) -> EfficientNet:
    """A model with a file's weights and the padding, BN eps, preprocessing and class names they come with.

    `model` (name, spec file or NetSpec) is needed for files that do not record their spec. `num_classes` other
    than the file's is refused unless `reset_classifier`: then the backbone loads and the classifier starts fresh.
    Explicit arguments override what the file (or a pretrained record) says; checkpoints load their EMA weights
    unless `use_ema=False`.
    """
    record = source if isinstance(source, PretrainedRecord) else None
    if record is not None:
        source, model = record.local_path(), model if model is not None else record.model
    file = source if isinstance(source, WeightFile) else read_file(source)
    record = record or _known_record(file)
    if record is not None:  # the file with the preprocessing and class names the record gives it
        preprocess = preprocess or record.preprocess
        class_names = record.class_names if class_names is None else class_names
    spec = _finished_spec(file, record, model, padding, norm_eps, drop_rate, drop_path_rate)
    wanted = file.num_classes if num_classes is None else num_classes
    built = file.num_classes if reset_classifier else wanted
    names = tuple(class_names) if class_names is not None else file.class_names
    net = EfficientNet(
        spec,
        num_classes=built,
        preprocess=preprocess or file.preprocess,
        class_names=names if names is not None and len(names) == built else None,
    )
    load_state_dict(net, file.weights(use_ema), source=str(file.path), strict=strict)
    if wanted != built:
        net.reset_classifier(wanted)
        net.class_names = tuple(class_names) if class_names is not None and len(class_names) == wanted else None
    return net
