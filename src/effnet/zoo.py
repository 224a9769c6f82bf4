"""The model registry: names -> specs, and `create_model` (random, pretrained records or a weights file)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from effnet.net import EfficientNet, EfficientNetFeatures
from effnet.pretrained import get_pretrained
from effnet.scaling import PUBLISHED, Coefficients, published_scale
from effnet.specs import B0, LITE0, MOBILENETV2, RESNET50, V2_BASE, V2_L, V2_M, V2_S, V2_XL, NetSpec


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


def create_model(
    model: str | Path | NetSpec,
    *,
    num_classes: int | None = None,
    weights: str | Path | None = None,
    drop_rate: float | None = None,
    drop_path_rate: float | None = None,
    padding: str | None = None,
    norm_eps: float | None = None,
    strict: bool = True,
    pretrained: bool | str = False,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
) -> Any:  # EfficientNet, or EfficientNetFeatures with features_only=True
    """Build a model by name, spec file or NetSpec: random, `pretrained` (True or a tag) or from a `weights` file.

    `num_classes` defaults to 1000, the file's or the record's count; with `pretrained` a different count keeps the
    backbone and starts a fresh classifier. Weights bring their padding, BN eps, preprocessing and class names
    (see `effnet.weights.load_model`); `padding="same"` / `norm_eps=1e-3` override them for TF-trained files.

    `features_only=True` returns a backbone (`EfficientNetFeatures`): its forward gives the feature maps of
    levels `out_indices` (default all, strides 2, 4, 8, 16, 32), with no head conv or classifier.
    """
    if out_indices is not None and not features_only:
        raise ValueError("out_indices selects feature levels; pass features_only=True with it")
    if features_only:
        net = create_model(
            model,
            num_classes=num_classes,  # matches the weights; the classifier is dropped below
            weights=weights,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            padding=padding,
            norm_eps=norm_eps,
            strict=strict,
            pretrained=pretrained,
        )
        return EfficientNetFeatures(net, out_indices)
    if pretrained and weights is not None:
        raise ValueError("give either pretrained= or weights=, not both")
    if pretrained:
        if padding is not None or norm_eps is not None:
            raise ValueError("pretrained weights set the padding and norm_eps themselves; drop those arguments")
        return _create_pretrained(model, pretrained, num_classes, drop_rate, drop_path_rate)
    if weights is not None:
        from effnet.weights import load_model

        return load_model(weights, model, num_classes=num_classes, padding=padding, norm_eps=norm_eps,
                          drop_rate=drop_rate, drop_path_rate=drop_path_rate, strict=strict)
    overrides = {"dropout": drop_rate, "drop_path_rate": drop_path_rate, "padding": padding, "norm_eps": norm_eps}
    spec = resolve_spec(model).replace(**{key: value for key, value in overrides.items() if value is not None})
    return EfficientNet(spec, num_classes=1000 if num_classes is None else num_classes)


def _create_pretrained(
    model: str | Path | NetSpec,
    tag: bool | str,
    num_classes: int | None,
    drop_rate: float | None,
    drop_path_rate: float | None,
) -> EfficientNet:
    from effnet.weights import load_model

    # `name` may carry the tag timm-style ("efficientnet_b0.tf_in1k"); an explicit tag string wins.
    name = model.name if isinstance(model, NetSpec) else str(model)
    record = get_pretrained(name, tag if isinstance(tag, str) else None)
    if record.model != name.split(".", 1)[0]:
        raise ValueError(f"pretrained tag {record.name} is for {record.model}, not {name}")
    return load_model(
        record,
        num_classes=num_classes,
        reset_classifier=True,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
    )


__all__ = [
    "create_model",
    "get_spec",
    "list_models",
    "resolve_spec",
]
