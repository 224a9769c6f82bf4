"""The one reader: every file effnet accepts -> what it holds (tensors, spec, classes, preprocessing, config).

Files effnet reads: its own safetensors (`save_weights`), `effnet train` checkpoints, and plain state dicts saved
by timm, torchvision or efficientnet-pytorch (`.pth` / `.bin` / `.safetensors`, Hugging Face Hub files included).
Nothing is built here and no code is executed: safetensors, or `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from effnet._util.filecheck import (
    FileValueError,
    build,
    check_depth,
    parse_json,
    regular_file,
    require_class_names,
    require_int,
    require_mapping,
)
from effnet.models.specs import NetSpec
from effnet.preprocess import Preprocess
from effnet.weights.layouts import CLASSIFIER_KEYS, detect_layout

EFFNET_FORMAT = "effnet"  # the "format" metadata of effnet's safetensors files
CHECKPOINT_FORMAT = "effnet-train-checkpoint-v1"  # the "format" entry of `effnet train` checkpoints
_WRAPPER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model", "ema")
_WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")


class CorruptCheckpoint(ValueError):
    """A weight file or checkpoint that cannot be read, or whose content does not match the checksum written with it."""


def content_checksum(state: dict[str, Any]) -> str:
    """SHA-256 of everything a checkpoint holds except its "checksum" entry (tensors by dtype, shape and bytes)."""
    digest = hashlib.sha256()
    _hash_into(digest, {key: value for key, value in state.items() if key != "checksum"})
    return digest.hexdigest()


def _hash_into(digest: Any, value: Any) -> None:
    # Lists and tuples hash alike: what matters is the content, not which container pickling gave back.
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{value.dtype}{tuple(value.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for key in sorted(value, key=repr):
            digest.update(repr(key).encode())
            _hash_into(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}".encode())
        for item in value:
            _hash_into(digest, item)
    else:
        digest.update(f"V{value!r}".encode())


@dataclass(frozen=True)
class WeightFile:
    """What one weight file holds; fields a file does not record are None."""

    path: Path
    kind: str  # "effnet" (save_weights), "checkpoint" (effnet train) or "state_dict" (any other)
    layout: str  # key layout of `tensors`: effnet, timm, torchvision or efficientnet-pytorch
    tensors: dict[str, torch.Tensor]  # the model weights (a checkpoint's raw, non-EMA weights)
    num_classes: int  # classifier outputs (0: no classifier)
    spec: NetSpec | None = None
    class_names: tuple[str, ...] | None = None
    preprocess: Preprocess | None = None
    ema_tensors: dict[str, torch.Tensor] | None = None  # a checkpoint's EMA weights
    config: dict[str, Any] | None = None  # the training config of a checkpoint's run
    checkpoint: dict[str, Any] | None = None  # a checkpoint's whole training state (optimizer, step, RNG, ...)

    def weights(self, use_ema: bool = True) -> dict[str, torch.Tensor]:
        """The tensors to load: the EMA weights when the file has them and `use_ema`, else the raw ones."""
        return self.ema_tensors if use_ema and self.ema_tensors is not None else self.tensors


def read_file(path: str | Path) -> WeightFile:
    """Read any weight file effnet accepts, without executing code; ValueError says what is wrong."""
    path = regular_file(path, "weight file", "give a .safetensors / .pt / .pth file")  # a FIFO would block
    return _read_safetensors(path) if _is_safetensors(path) else _read_torch(path)


def _is_safetensors(path: Path) -> bool:
    # A safetensors file starts with an 8-byte header length and the JSON header's "{"; Hub blobs have no suffix.
    if path.suffix == ".safetensors":
        return True
    if path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        return False
    with open(path, "rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _read_safetensors(path: Path) -> WeightFile:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as err:  # noqa: BLE001 - safetensors raises several types for a damaged file
        raise CorruptCheckpoint(f"{path} is damaged and cannot be read as safetensors ({_first_line(err)})") from None
    if metadata.get("format") != EFFNET_FORMAT or "spec" not in metadata:
        return _state_dict_file(path, tensors)
    # effnet's metadata may sit beside timm's or torchvision's key names (save_weights(..., layout=...)).
    layout = detect_layout(set(tensors))
    num_classes = _classifier_rows(tensors, layout)
    names, pre = metadata.get("class_names"), metadata.get("preprocess")
    spec, class_names, preprocess = _recorded(
        path,
        tensors,
        num_classes,
        parse_json(metadata["spec"], "metadata 'spec'", path),
        parse_json(names, "metadata 'class_names'", path) if names else None,
        parse_json(pre, "metadata 'preprocess'", path) if pre else None,
        "metadata ",
    )
    return WeightFile(path, "effnet", layout, tensors, num_classes, spec, class_names, preprocess)


def _recorded(
    path: Path, tensors: dict[str, torch.Tensor], num_classes: int, spec: Any, names: Any, pre: Any, where: str
) -> tuple[NetSpec, tuple[str, ...] | None, Preprocess | None]:
    """The spec, class names and preprocessing a file records, each checked against the tensors beside it."""
    built = build(NetSpec.from_dict, spec, path, f"{where}'spec'")
    check_spec_fits(built, tensors, path, f"{where}'spec'")
    class_names = require_class_names(names, f"{where}'class_names'", path, num_classes or None) if names else None
    preprocess = build(Preprocess.from_dict, pre, path, f"{where}'preprocess'") if pre else None
    return built, class_names, preprocess


def check_spec_fits(spec: NetSpec, tensors: dict[str, torch.Tensor], path: Path, field: str) -> None:
    """Refuse a recorded spec bigger than the weights beside it, before any layer is built: each width it names
    is at most the largest tensor dimension in the file, and it has no more blocks than the file has tensors (a
    tampered `head_channels: 50000000` would otherwise allocate gigabytes first and fail to load after)."""
    widest = max((max(tensor.shape) for tensor in tensors.values() if tensor.dim()), default=0)
    widths = [("stem_channels", spec.stem_channels), ("head_channels", spec.head_channels or 0)]
    channels = spec.stem_channels
    for index, stage in enumerate(spec.stages):
        if stage.block != "bottleneck":  # a bottleneck's expand_ratio narrows
            widths.append((f"stages[{index}] expanded channels", int(channels * stage.expand_ratio)))
        widths.append((f"stages[{index}].out_channels", stage.out_channels))
        channels = stage.out_channels
    for name, width in widths:
        if width > widest:
            raise FileValueError(
                path,
                field,
                f"says {name} {width}, but the widest tensor in the file has {widest}; the "
                "metadata does not describe these weights (the file was altered or damaged)",
            )
    if spec.num_blocks > len(tensors):
        raise FileValueError(
            path,
            field,
            f"has {spec.num_blocks} blocks, more than the {len(tensors)} tensors in the file; the "
            "metadata does not describe these weights (the file was altered or damaged)",
        )


def read_torch_file(path: Path) -> Any:
    """torch.load(weights_only=True) of an existing file; a damaged file or a refused pickle is one
    CorruptCheckpoint, and a checkpoint's checksum is verified. (torch's "weights_only=False will likely succeed"
    hint is left out: that would run the file's code.)"""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        what = f" ({found.group(1)})" if found else ""
        raise CorruptCheckpoint(
            f"{path} holds Python objects other than tensors and plain data{what}; effnet reads "
            "weight files without executing code and does not load such pickles"
        ) from None
    except Exception as err:  # truncated zip, garbage bytes: torch raises many types
        raise CorruptCheckpoint(f"{path} is damaged and cannot be read ({_first_line(err)})") from None
    check_depth(state, "(its content)", path)  # before anything walks it (the checksum is recursive)
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT and "checksum" in state:
        if state["checksum"] != content_checksum(state):
            raise CorruptCheckpoint(f"{path} is damaged: its content does not match the checksum written with it")
    return state


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _read_torch(path: Path) -> WeightFile:
    obj = read_torch_file(path)
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        return _checkpoint_file(path, obj)
    return _state_dict_file(path, _unwrap(obj, path))


def _checkpoint_file(path: Path, state: dict[str, Any]) -> WeightFile:
    missing = [key for key in ("model", "spec", "num_classes") if key not in state]
    if missing:
        raise CorruptCheckpoint(
            f"{path} is an effnet checkpoint without {missing}; it is damaged or from another version of effnet"
        )
    tensors = _tensor_dict(state["model"], "'model'", path)
    rows = _classifier_rows(tensors, "effnet")
    num_classes = require_int(state["num_classes"], "'num_classes'", path, 0, 10_000_000)
    if num_classes != rows:
        raise FileValueError(path, "'num_classes'", f"is {num_classes}, but its classifier has {rows} rows")
    ema = state.get("ema")
    ema_tensors = _tensor_dict(ema["module"], "'ema'", path) if isinstance(ema, dict) and "module" in ema else None
    config = state.get("config")
    spec, class_names, preprocess = _recorded(
        path, tensors, num_classes, state["spec"], state.get("class_names"), state.get("preprocess"), ""
    )
    return WeightFile(
        path=path,
        kind="checkpoint",
        layout="effnet",
        tensors=tensors,
        num_classes=num_classes,
        spec=spec,
        class_names=class_names,
        preprocess=preprocess,
        ema_tensors=ema_tensors,
        config=require_mapping(config, "'config'", path) if config is not None else None,
        checkpoint=state,
    )


def _tensor_dict(value: Any, field: str, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(value, dict) or not all(
        isinstance(key, str) and isinstance(tensor, torch.Tensor) for key, tensor in value.items()
    ):
        raise FileValueError(path, field, "must be a mapping of parameter names to tensors")
    return value


def _state_dict_file(path: Path, tensors: dict[str, torch.Tensor]) -> WeightFile:
    layout = detect_layout(set(tensors))
    return WeightFile(path, "state_dict", layout, tensors, _classifier_rows(tensors, layout))


def _classifier_rows(tensors: dict[str, torch.Tensor], layout: str) -> int:
    weight = tensors.get(CLASSIFIER_KEYS[layout])
    return int(weight.shape[0]) if weight is not None else 0


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint (`{"state_dict": ...}`, DDP's `module.` prefixes, ...)."""
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                return _unwrap(obj[key], path)
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    state = dict(obj)
    for prefix in _WRAPPER_PREFIXES:
        if all(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items()}
    return state
