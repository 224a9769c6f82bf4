"""The model registry: `create_model` (random, pretrained records or a weights file) over the catalog's names."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from effnet.models.catalog import get_spec, list_models, resolve_spec
from effnet.models.net import EfficientNet, EfficientNetFeatures, pool_type
from effnet.models.specs import NetSpec
from effnet.weights.loader import load_model
from effnet.weights.source import check_one_source, pretrained_record


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
    takes timm's names ("dict" keys the maps by module name). timm's other arguments: `in_chans` (pretrained stem
    weights adapted as timm's `adapt_input_conv` does), `global_pool` ("avg", "max", "avgmax", or "" / None for
    none, with num_classes=0) and `output_stride` (8 or 16: the late stages dilate instead of striding).
    """
    _check_timm_args(features_only, out_indices, feature_cls, in_chans)
    settings = {"drop_rate": drop_rate, "drop_path_rate": drop_path_rate, "padding": padding, "norm_eps": norm_eps}
    if features_only:  # the classifier matches the weights here; EfficientNetFeatures drops it
        loaded = {"num_classes": num_classes, "weights": weights, "strict": strict, "pretrained": pretrained}
        net = create_model(model, in_chans=in_chans, output_stride=output_stride, **loaded, **settings)
        return EfficientNetFeatures(net, out_indices, feature_cls)
    check_one_source(pretrained, weights)
    if pretrained:
        net = _create_pretrained(model, pretrained, num_classes, **settings)
    elif weights is not None:
        net = load_model(weights, model, num_classes=num_classes, strict=strict, **settings)
    else:  # random weights: built with timm's arguments directly
        spec = _with_settings(resolve_spec(model), drop_rate, drop_path_rate, padding, norm_eps, in_channels=in_chans)
        classes = 1000 if num_classes is None else num_classes
        return EfficientNet(spec, num_classes=classes, global_pool=global_pool, output_stride=output_stride)
    return _with_timm_args(net, in_chans, global_pool, output_stride)


def _with_settings(
    spec: NetSpec,
    drop_rate: float | None,
    drop_path_rate: float | None,
    padding: str | None,
    norm_eps: float | None,
    in_channels: int | None,
) -> NetSpec:
    """`spec` with the settings that are given (not None)."""
    changes = {"dropout": drop_rate, "drop_path_rate": drop_path_rate, "padding": padding, "norm_eps": norm_eps}
    changes["in_channels"] = in_channels
    return spec.replace(**{key: value for key, value in changes.items() if value is not None})


def _check_timm_args(
    features_only: bool, out_indices: Sequence[int] | None, feature_cls: str | None, in_chans: int | None
) -> None:
    """timm's feature and input-channel arguments, refused where they would be ignored or make no sense."""
    if out_indices is not None and not features_only:
        raise ValueError("out_indices selects feature levels; pass features_only=True with it")
    if feature_cls is not None and not features_only:
        raise ValueError("feature_cls picks the features_only wrapper; pass features_only=True with it")
    if in_chans is not None and (isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1):
        raise ValueError(f"in_chans must be a whole number >= 1, got {in_chans!r}")


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
    padding: str | None,
    norm_eps: float | None,
) -> EfficientNet:
    if padding is not None or norm_eps is not None:
        raise ValueError("pretrained weights set the padding and norm_eps themselves; drop those arguments")
    # `model` may carry the tag timm-style ("efficientnet_b0.tf_in1k"); an explicit tag string wins.
    record = pretrained_record(model.name if isinstance(model, NetSpec) else str(model), tag)
    return load_model(
        record, num_classes=num_classes, reset_classifier=True, drop_rate=drop_rate, drop_path_rate=drop_path_rate
    )


__all__ = [
    "adapt_input_conv",
    "create_model",
    "get_spec",
    "list_models",
    "resolve_spec",
]
