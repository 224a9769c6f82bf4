"""The model registry: names -> specs, and `create_model` (random, pretrained records or a weights file)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from effnet.models.net import EfficientNet, EfficientNetFeatures, pool_type
from effnet.models.scaling import PUBLISHED, Coefficients, published_scale
from effnet.models.specs import B0, LITE0, MOBILENETV2, RESNET50, V2_BASE, V2_L, V2_M, V2_S, V2_XL, NetSpec
from effnet.weights.pretrained import get_pretrained


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
    in_chans: int | None = None,
    global_pool: str | None = "avg",
    output_stride: int = 32,
    feature_cls: str | None = None,
) -> Any:  # EfficientNet, or EfficientNetFeatures with features_only=True
    """Build a model by name, spec file or NetSpec: random, `pretrained` (True or a tag) or from a `weights` file.

    `num_classes` defaults to 1000, the file's or the record's count; with `pretrained` a different count keeps the
    backbone and starts a fresh classifier. Weights bring their padding, BN eps, preprocessing and class names
    (see `effnet.weights.load_model`); `padding="same"` / `norm_eps=1e-3` override them for TF-trained files.

    `features_only=True` returns a backbone (`EfficientNetFeatures`): its forward gives the feature maps of
    levels `out_indices` (default all, strides 2, 4, 8, 16, 32), with no head conv or classifier; `feature_cls`
    takes timm's names ("dict" keys the maps by module name).

    timm's arguments: `in_chans` (pretrained stem weights adapted as timm's `adapt_input_conv` does),
    `global_pool` ("avg", "max", "avgmax", or "" / None for none, with num_classes=0) and `output_stride`
    (8 or 16: the late stages dilate instead of striding; the weights are the same).
    """
    if out_indices is not None and not features_only:
        raise ValueError("out_indices selects feature levels; pass features_only=True with it")
    if feature_cls is not None and not features_only:
        raise ValueError("feature_cls picks the features_only wrapper; pass features_only=True with it")
    if in_chans is not None and (isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1):
        raise ValueError(f"in_chans must be a whole number >= 1, got {in_chans!r}")
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
            in_chans=in_chans,
            output_stride=output_stride,
        )
        return EfficientNetFeatures(net, out_indices, feature_cls)
    if pretrained and weights is not None:
        raise ValueError("give either pretrained= or weights=, not both")
    if pretrained:
        if padding is not None or norm_eps is not None:
            raise ValueError("pretrained weights set the padding and norm_eps themselves; drop those arguments")
        net = _create_pretrained(model, pretrained, num_classes, drop_rate, drop_path_rate)
        return _with_timm_args(net, in_chans, global_pool, output_stride)
    if weights is not None:
        from effnet.weights import load_model

        net = load_model(
            weights,
            model,
            num_classes=num_classes,
            padding=padding,
            norm_eps=norm_eps,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            strict=strict,
        )
        return _with_timm_args(net, in_chans, global_pool, output_stride)
    overrides = {
        "dropout": drop_rate,
        "drop_path_rate": drop_path_rate,
        "padding": padding,
        "norm_eps": norm_eps,
        "in_channels": in_chans,
    }
    spec = resolve_spec(model).replace(**{key: value for key, value in overrides.items() if value is not None})
    classes = 1000 if num_classes is None else num_classes
    return EfficientNet(spec, num_classes=classes, global_pool=global_pool, output_stride=output_stride)


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A first-conv kernel trained on RGB, for `in_channels` inputs, by timm's rule: one channel sums the three;
    more repeat them cyclically, scaled by 3 / in_channels so the response to a flat image is unchanged."""
    out_channels, rgb, height, width = weight.shape
    if in_channels == rgb:
        return weight
    if rgb != 3:
        raise ValueError(f"only RGB stem weights can be adapted to in_chans={in_channels}; these have {rgb} channels")
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_channels // 3)
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (3 / in_channels)


def _with_timm_args(net: EfficientNet, in_chans: int | None, global_pool: str | None, output_stride: int) -> Any:
    """A loaded model rebuilt for timm's in_chans / global_pool / output_stride, keeping its weights."""
    in_channels = net.spec.in_channels if in_chans is None else in_chans
    if (in_channels, pool_type(global_pool), output_stride) == (net.spec.in_channels, "avg", 32):
        return net
    rebuilt = EfficientNet(
        net.spec.replace(in_channels=in_channels),
        net.num_classes,
        preprocess=net.preprocess,
        class_names=net.class_names,
        global_pool=global_pool,
        output_stride=output_stride,
    )
    state = net.state_dict()
    state["stem.conv.weight"] = adapt_input_conv(state["stem.conv.weight"], in_channels)
    rebuilt.load_state_dict(state)
    return rebuilt.train(net.training)


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
    "adapt_input_conv",
    "create_model",
    "get_spec",
    "list_models",
    "resolve_spec",
]
