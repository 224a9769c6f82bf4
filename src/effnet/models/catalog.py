"""The catalog of named models: registry names -> NetSpecs (the published tables and their scaled variants).

It builds nothing and knows no weights, so the weights package can resolve names without importing the registry
(`effnet.models.registry`, which builds models and loads their weights, sits above both).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from effnet.models.scaling import PUBLISHED, Coefficients, published_scale
from effnet.models.specs import B0, LITE0, MOBILENETV2, RESNET50, V2_BASE, V2_L, V2_M, V2_S, V2_XL, NetSpec


def _efficientnet(key: str) -> Callable[[], NetSpec]:
    return lambda: published_scale(B0, PUBLISHED[key], f"efficientnet_{key}")


_LITE = {
    "lite0": Coefficients(1.0, 1.0, 224, 0.2),
    "lite1": Coefficients(1.0, 1.1, 240, 0.2),
    "lite2": Coefficients(1.1, 1.2, 260, 0.3),
    "lite3": Coefficients(1.2, 1.4, 280, 0.3),
    "lite4": Coefficients(1.4, 1.8, 300, 0.3),
}

# V2-B0..B3: (width, depth, eval resolution, dropout) and their train resolution.
_V2_BASE = {
    "b0": (Coefficients(1.0, 1.0, 224, 0.2), 192),
    "b1": (Coefficients(1.0, 1.1, 240, 0.2), 192),
    "b2": (Coefficients(1.1, 1.2, 260, 0.3), 208),
    "b3": (Coefficients(1.2, 1.4, 300, 0.3), 240),
}


def _lite(key: str) -> Callable[[], NetSpec]:
    return lambda: published_scale(LITE0, _LITE[key], f"efficientnet_{key}")


def _v2_base(key: str) -> Callable[[], NetSpec]:
    coefficients, train_resolution = _V2_BASE[key]
    return lambda: replace(
        published_scale(V2_BASE, coefficients, f"efficientnetv2_{key}"), train_resolution=train_resolution
    )


_REGISTRY: dict[str, Callable[[], NetSpec]] = {
    **{f"efficientnet_{key}": _efficientnet(key) for key in PUBLISHED},
    **{f"efficientnet_{key}": _lite(key) for key in _LITE},
    **{f"efficientnetv2_{key}": _v2_base(key) for key in _V2_BASE},
    "efficientnetv2_s": lambda: V2_S,
    "efficientnetv2_m": lambda: V2_M,
    "efficientnetv2_l": lambda: V2_L,
    "efficientnetv2_xl": lambda: V2_XL,
    "mobilenetv2": lambda: MOBILENETV2,
    "resnet50": lambda: RESNET50,
}


def list_models() -> list[str]:
    """Names `create_model` accepts."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> NetSpec:
    """The spec of a registered model; unknown names get a ValueError listing close matches."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=4, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} See effnet.list_models() for all names.")
    return _REGISTRY[name]()


def resolve_spec(model: str | Path | NetSpec) -> NetSpec:
    """A NetSpec from a registry name, a spec file written by `effnet scale`, or a spec itself."""
    if isinstance(model, NetSpec):
        return model
    if isinstance(model, Path) or str(model).endswith(".json"):
        return NetSpec.load(model)
    return get_spec(str(model))


__all__ = ["get_spec", "list_models", "resolve_spec"]
