"""EfficientNet (and any network described by a NetSpec) as an nn.Module, with backbone conveniences."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from effnet.models.features import FeatureInfo, select_levels, spec_feature_info, take_indices
from effnet.models.layers import BLOCKS, ConvNormAct, LayerConfig
from effnet.models.specs import NetSpec
from effnet.preprocess import Preprocess, default_preprocess

OUTPUT_STRIDE = 32
OUTPUT_STRIDES = (8, 16, 32)  # as timm: 8 / 16 replace the late strides by dilation (dense prediction)
GLOBAL_POOLS = ("avg", "max", "avgmax", "")


def pool_type(global_pool: str | None) -> str:
    """A checked pooling name; None means no pooling, as "" (timm's SelectAdaptivePool2d)."""
    global_pool = global_pool or ""
    if global_pool not in GLOBAL_POOLS:
        raise ValueError(f"global_pool must be one of {GLOBAL_POOLS} or None, got {global_pool!r}")
    return global_pool


def _is_tracing(x: torch.Tensor) -> bool:
    # Under fx / jit tracing and torch.compile / torch.export the shape checks below would be branches on
    # symbolic values (a TraceError for fx); the traced graph is only ever run on inputs that passed eager use.
    return (
        isinstance(x, torch.fx.Proxy)
        or torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.compiler.is_compiling()
    )


def check_input(x: torch.Tensor, spec: NetSpec, weight_dtype: torch.dtype | None = None) -> None:
    """Friendly ValueErrors for inputs the network cannot take (skipped while tracing or compiling)."""
    if _is_tracing(x):
        return
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor batch of images, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(
            f"expected a float tensor of normalized pixels, got {x.dtype}; use model.preprocess "
            "(or x.float() / 255 then normalize)"
        )
    if weight_dtype is not None and x.dtype != weight_dtype and not torch.is_autocast_enabled(x.device.type):
        raise ValueError(
            f"the input is {x.dtype} but the weights are {weight_dtype}; convert one to the other "
            f"(x.to({weight_dtype}) or model.to({x.dtype})) or run under torch.autocast"
        )
    if x.ndim != 4:
        raise ValueError(f"expected a batch of images shaped (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] != spec.in_channels:
        raise ValueError(
            f"expected {spec.in_channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)}); "
            "convert grayscale/RGBA images to RGB first, e.g. PIL's image.convert('RGB')"
        )
    if min(x.shape[-2:]) < OUTPUT_STRIDE:
        raise ValueError(
            f"input {x.shape[-2]}x{x.shape[-1]} is too small: the network downsamples by {OUTPUT_STRIDE}, so "
            f"resize to at least {OUTPUT_STRIDE}x{OUTPUT_STRIDE} (native resolution: {spec.resolution})"
        )


def _weight_dtype(stem: nn.Module) -> torch.dtype | None:
    # The stem conv's weight dtype is the dtype inputs must have (None for quantized or swapped-out stems).
    weight = getattr(getattr(stem, "conv", None), "weight", None)
    return weight.dtype if isinstance(weight, torch.Tensor) and weight.is_floating_point() else None


def global_pool(x: torch.Tensor, pool_type: str) -> torch.Tensor:
    """(N, C, H, W) -> (N, C) by average, max or their mean ("avgmax"); "" keeps the map."""
    if pool_type == "avg":
        return F.adaptive_avg_pool2d(x, 1).flatten(1)
    if pool_type == "max":
        return F.adaptive_max_pool2d(x, 1).flatten(1)
    if pool_type == "avgmax":
        return 0.5 * (F.adaptive_avg_pool2d(x, 1) + F.adaptive_max_pool2d(x, 1)).flatten(1)
    return x


def conv_init_std(conv: nn.Conv2d) -> float:
    """The TF reference's init std for a conv kernel: sqrt(2 / (k_h * k_w * out_channels / groups))."""
    kernel_h, kernel_w = conv.kernel_size
    return (2.0 / (kernel_h * kernel_w * conv.out_channels // conv.groups)) ** 0.5


class EfficientNet(nn.Module):
    """stem -> stages of blocks -> 1x1 head -> global pool -> dropout -> linear, built from a NetSpec."""

    def __init__(
        self,
        spec: NetSpec,
        num_classes: int = 1000,
        *,
        preprocess: Preprocess | None = None,
        class_names: Sequence[str] | None = None,
        global_pool: str | None = "avg",
        output_stride: int = OUTPUT_STRIDE,
    ) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
            raise ValueError(f"num_classes must be a whole number >= 0 (0 = no classifier), got {num_classes!r}")
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")
        self.spec = spec
        self.output_stride = output_stride
        layer = LayerConfig(spec.activation, spec.norm_eps, spec.norm_momentum, spec.padding)
        self.stem = ConvNormAct(spec.in_channels, spec.stem_channels, spec.stem_kernel_size, 2, layer=layer)
        self.stem_pool = nn.MaxPool2d(3, 2, 1) if spec.stem_pool else nn.Identity()
        self.stages = self._build_stages(spec, layer, output_stride)

        self.head: nn.Module = (
            ConvNormAct(spec.stages[-1].out_channels, spec.head_channels, 1, layer=layer)
            if spec.head_channels
            else nn.Identity()
        )
        self.num_features = spec.num_features
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier: nn.Module = nn.Identity()
        self.global_pool = "avg"
        self.reset_classifier(num_classes, pool_type(global_pool))  # None here: no pooling, as timm
        self.grad_checkpointing = False
        # Settings that travel with the weights: files and pretrained records pass the ones their training used.
        self.preprocess: Preprocess = preprocess or default_preprocess(spec)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes; give one name per class")
        self.class_names: tuple[str, ...] | None = tuple(class_names) if class_names is not None else None
        self._init_weights()

    # ----------------------------------------------------------------------------------------------- set-up
    @staticmethod
    def _build_stages(spec: NetSpec, layer: LayerConfig, output_stride: int) -> nn.ModuleList:
        stages: list[nn.Module] = []
        in_channels, block_index = spec.stem_channels, 0
        # timm's rule for output_stride < 32: a stride that would pass it becomes 1, and the blocks after it
        # dilate their kxk conv by that stride instead (the block that lost its stride keeps the old dilation).
        reduction, dilation = 2 * (2 if spec.stem_pool else 1), 1
        for stage in spec.stages:
            blocks = []
            for i in range(stage.num_layers):
                stride, block_dilation = stage.stride if i == 0 else 1, dilation
                if stride > 1 and reduction * stride > output_stride:
                    stride, dilation = 1, dilation * stride
                reduction *= stride
                # Stochastic depth grows linearly with depth: block k of n drops with rate * k / n.
                rate = spec.drop_path_rate * block_index / spec.num_blocks
                blocks.append(
                    BLOCKS[stage.block](
                        in_channels,
                        stage.out_channels,
                        stage.kernel_size,
                        stride,
                        stage.expand_ratio,
                        stage.se_ratio,
                        layer,
                        rate,
                        dilation=block_dilation,
                    )
                )
                in_channels, block_index = stage.out_channels, block_index + 1
            stages.append(nn.Sequential(*blocks))
        return nn.ModuleList(stages)

    def _init_weights(self) -> None:
        # The TF reference's initializers (efficientnet_model.conv_kernel_initializer / dense_kernel_initializer):
        # convs normal(0, sqrt(2 / fan_out)) with fan_out = k*k*out/groups -- TF's depthwise kernel is
        # [k, k, C, 1], so its fan_out is k*k, not PyTorch's k*k*C -- and the classifier uniform(+-1/sqrt(out)).
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, conv_init_std(module))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / module.out_features**0.5
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    @property
    def num_classes(self) -> int:
        """Number of classifier outputs (0 when the classifier was removed)."""
        return self.classifier.out_features if isinstance(self.classifier, nn.Linear) else 0

    def get_classifier(self) -> nn.Module:
        """The final linear layer (nn.Identity when the classifier was removed), as timm."""
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier with a fresh one for `num_classes` outputs (0 removes it).

        `global_pool` ("avg", "max", "avgmax", or "" for no pooling, only without a classifier) as in timm;
        None keeps the current pooling. (At construction, `EfficientNet(global_pool=None)` means no pooling.)
        """
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if global_pool is not None:
            global_pool = pool_type(global_pool)
            if global_pool == "" and num_classes > 0:
                raise ValueError("global_pool='' (no pooling) needs num_classes=0: a classifier needs pooled features")
            self.global_pool = global_pool
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if isinstance(self.classifier, nn.Linear):
            bound = 1.0 / num_classes**0.5
            nn.init.uniform_(self.classifier.weight, -bound, bound)
            nn.init.zeros_(self.classifier.bias)

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """timm-style data config, so `timm.data.resolve_data_config(model=m)` returns this model's preprocessing."""
        size = self.preprocess.input_size
        return {
            **self.preprocess.timm_cfg(),
            "input_size": (self.spec.in_channels, size, size),
            "num_classes": self.num_classes,
            "architecture": self.spec.name,
        }

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's activations in the backward pass: less memory, ~30% more compute."""
        self.grad_checkpointing = enable

    @property
    def feature_info(self) -> FeatureInfo:
        """timm-style levels (`num_chs`, `reduction`, `module`) of the maps `feature_maps` returns."""
        return spec_feature_info(self.spec, self.output_stride)

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's parameter groups (`param_groups_layer_decay`): the stem, each block (each stage if `coarse`),
        then the head conv; the classifier is left out, as timm does, and gets the last group."""
        return {
            "stem": r"^stem\.",
            "blocks": [(r"^stages\.(\d+)" if coarse else r"^stages\.(\d+)\.(\d+)", None), (r"^head\.", (99999,))],
        }

    def no_weight_decay(self) -> set[str]:
        """Parameters trained without weight decay: BatchNorm scales and shifts and every bias."""
        return {name for name, param in self.named_parameters() if param.ndim <= 1}

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """timm's API (its FeatureGetterNet calls it): drop the stages after the last level in `indices` and the
        head conv and classifier that then have nothing to do; returns the kept level indices."""
        levels = self.feature_info
        take = take_indices(len(levels), indices)
        last = levels[max(take)]["stage"]
        truncated = last < len(self.stages) - 1
        self.stages = self.stages[: last + 1]
        if prune_norm or prune_head or truncated:
            self.head = nn.Identity()
            self.num_features = levels[max(take)]["num_chs"]
            self.reset_classifier(0, "")
        return take

    # ---------------------------------------------------------------------------------------------- forward
    def _run_stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(stage, x, use_reentrant=False)
        return stage(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (after the head conv), before pooling."""
        check_input(x, self.spec, _weight_dtype(self.stem))
        x = self.stem_pool(self.stem(x))
        for stage in self.stages:
            x = self._run_stage(stage, x)
        return self.head(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, dropout and classify a feature map (pre_logits: stop before the classifier)."""
        x = global_pool(x, self.global_pool)
        return x if pre_logits else self.classifier(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Multi-scale maps at strides 2, 4, 8, 16, 32 for detection / segmentation necks."""
        return self.forward_intermediates(x, intermediates_only=True)  # type: ignore[return-value]

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's API: the maps of feature levels `indices` (None: all, n: the last n, a sequence: those) and,
        unless `intermediates_only`, the final feature map (after the head conv when every stage ran).

        `stop_early` skips the stages after the last wanted level; `norm` is accepted and has nothing to do (as in
        timm's EfficientNet there is no norm after the stages); `output_fmt` must be "NCHW".
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW' (EfficientNet's maps are channels-first), got {output_fmt!r}")
        levels = self.feature_info
        take = {levels[i]["stage"] for i in take_indices(len(levels), indices)}
        check_input(x, self.spec, _weight_dtype(self.stem))
        last = max(take) if stop_early else len(self.stages) - 1
        maps, x = [], self.stem_pool(self.stem(x))
        for index, stage in enumerate(self.stages[: last + 1]):
            x = self._run_stage(stage, x)
            if index in take:
                maps.append(x)
        if intermediates_only:
            return maps
        return (self.head(x) if last == len(self.stages) - 1 else x), maps


FEATURE_CLASSES = ("list", "dict", "getter", "hook", "fx")  # timm's feature_cls values effnet accepts


class EfficientNetFeatures(nn.Module):
    """Stem and stages of an EfficientNet, cut after the deepest wanted level; forward returns the feature maps.

    Built by `create_model(name, features_only=True, out_indices=...)`. No head conv or classifier is kept, so
    every parameter gets a gradient (DDP needs no `find_unused_parameters`), and the submodule names match the
    full model's, so its state dict loads into this one with `strict=False`. `feature_cls="dict"` returns the
    maps keyed by module name, as timm's FeatureDictNet; timm's other wrappers ("getter", "hook", "fx") return
    the same list as the default, so they are accepted and give it.
    """

    def __init__(
        self, model: EfficientNet, out_indices: Sequence[int] | None = None, feature_cls: str | None = None
    ) -> None:
        super().__init__()
        if (feature_cls or "list") not in FEATURE_CLASSES:
            raise ValueError(f"feature_cls must be one of {FEATURE_CLASSES} (timm's names), got {feature_cls!r}")
        self.spec: NetSpec = model.spec
        self.feature_info = select_levels(model.feature_info, out_indices)
        self.out_indices = tuple(out_indices) if out_indices is not None else tuple(range(len(model.feature_info)))
        self.as_dict = feature_cls == "dict"
        # torchvision's detectors read `backbone.out_channels`: the channels of the deepest map (what
        # `sequential()` returns); an FPN on top takes `feature_info.channels()` instead.
        self.out_channels: int = self.feature_info.channels()[-1]
        last = self.feature_info[-1]["stage"]
        self.stem = model.stem
        self.stem_pool = model.stem_pool
        self.stages = nn.ModuleList(list(model.stages)[: last + 1])
        self.preprocess = model.preprocess
        self.grad_checkpointing = model.grad_checkpointing
        self._wanted = frozenset(entry["stage"] for entry in self.feature_info)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's activations in the backward pass."""
        self.grad_checkpointing = enable

    def sequential(self) -> nn.Sequential:
        """The same modules as an nn.Sequential of `stem`, `stem_pool`, `stages_0`, ...: what torchvision's
        `BackboneWithFPN(body, body_info.return_layers(), ...)` and `IntermediateLayerGetter` walk; its forward
        gives the deepest map and it carries `out_channels`, so `FasterRCNN(backbone.sequential(), ...)` works."""
        children = [("stem", self.stem), ("stem_pool", self.stem_pool)]
        children += [(f"stages_{index}", stage) for index, stage in enumerate(self.stages)]
        body = nn.Sequential(OrderedDict(children))
        body.out_channels = self.out_channels  # type: ignore[assignment]
        return body

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | dict[str, torch.Tensor]:
        check_input(x, self.spec, _weight_dtype(self.stem))
        maps, x = [], self.stem_pool(self.stem(x))
        for index, stage in enumerate(self.stages):
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
            if index in self._wanted:
                maps.append(x)
        if self.as_dict:
            return OrderedDict(zip(self.feature_info.module_name(), maps, strict=True))
        return maps
