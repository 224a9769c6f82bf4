"""effnet: EfficientNet V1/V2/Lite and the compound scaling method behind them."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public names and the module each comes from, imported on first use (PEP 562): `import effnet` (and so
# `effnet --help` / `--version`, whose cli module lives under this package) costs no torch import.
_EXPORTS = {
    "EfficientNet": "effnet.models.net",
    "create_model": "effnet.models.registry",
    "get_spec": "effnet.models.registry",
    "list_models": "effnet.models.registry",
    "PUBLISHED": "effnet.models.scaling",
    "check_coefficients": "effnet.models.scaling",
    "compound_scale": "effnet.models.scaling",
    "scale": "effnet.models.scaling",
    "NetSpec": "effnet.models.specs",
    "ScalingRules": "effnet.models.specs",
    "StageSpec": "effnet.models.specs",
    "Preprocess": "effnet.preprocess",
    "load_model": "effnet.weights",
    "save_weights": "effnet.weights",
    "get_pretrained": "effnet.weights.pretrained",
    "list_pretrained": "effnet.weights.pretrained",
}

if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from effnet.models.net import EfficientNet
    from effnet.models.registry import create_model, get_spec, list_models
    from effnet.models.scaling import PUBLISHED, check_coefficients, compound_scale, scale
    from effnet.models.specs import NetSpec, ScalingRules, StageSpec
    from effnet.preprocess import Preprocess
    from effnet.weights import load_model, save_weights
    from effnet.weights.pretrained import get_pretrained, list_pretrained

__all__ = [
    "PUBLISHED",
    "EfficientNet",
    "NetSpec",
    "Preprocess",
    "ScalingRules",
    "StageSpec",
    "__version__",
    "check_coefficients",
    "compound_scale",
    "create_model",
    "get_pretrained",
    "get_spec",
    "list_models",
    "list_pretrained",
    "load_model",
    "save_weights",
    "scale",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module when the name is first used, and keep the name here."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'effnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
