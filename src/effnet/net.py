"""EfficientNet (and any network described by a NetSpec) as an nn.Module, with backbone conveniences."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from effnet.layers import BLOCKS, ConvNormAct, LayerConfig
from effnet.preprocess import Preprocess, default_preprocess
from effnet.specs import NetSpec

OUTPUT_STRIDE = 32


def conv_init_std(conv: nn.Conv2d) -> float:
    """The TF reference's init std for a conv kernel: sqrt(2 / (k_h * k_w * out_channels / groups))."""
    kernel_h, kernel_w = conv.kernel_size
    return (2.0 / (kernel_h * kernel_w * conv.out_channels // conv.groups)) ** 0.5


class EfficientNet(nn.Module):
    """stem -> stages of blocks -> 1x1 head -> global pool -> dropout -> linear, built from a NetSpec."""

    def __init__(self, spec: NetSpec, num_classes: int = 1000) -> None:
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = no classifier), got {num_classes}")
        self.spec = spec
        layer = LayerConfig(spec.activation, spec.norm_eps, spec.norm_momentum, spec.padding)
        self.stem = ConvNormAct(spec.in_channels, spec.stem_channels, spec.stem_kernel_size, 2, layer=layer)
        self.stem_pool = nn.MaxPool2d(3, 2, 1) if spec.stem_pool else nn.Identity()

        stages: list[nn.Module] = []
        in_channels, block_index = spec.stem_channels, 0
        for stage in spec.stages:
            blocks = []
            for i in range(stage.num_layers):
                # Stochastic depth grows linearly with depth: block k of n drops with rate * k / n.
                rate = spec.drop_path_rate * block_index / spec.num_blocks
                blocks.append(
                    BLOCKS[stage.block](
                        in_channels,
                        stage.out_channels,
                        stage.kernel_size,
                        stage.stride if i == 0 else 1,
                        stage.expand_ratio,
                        stage.se_ratio,
                        layer,
                        rate,
                    )
                )
                in_channels, block_index = stage.out_channels, block_index + 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)

        self.head: nn.Module = (
            ConvNormAct(in_channels, spec.head_channels, 1, layer=layer) if spec.head_channels else nn.Identity()
        )
        self.num_features = spec.num_features
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier: nn.Module = nn.Identity()
        self.reset_classifier(num_classes)
        self.grad_checkpointing = False
        # Pretrained weight records replace this with the preprocessing their training used.
        self.preprocess: Preprocess = default_preprocess(spec)
        self._init_weights()

    # ----------------------------------------------------------------------------------------------- set-up
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

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a fresh one for `num_classes` outputs (0 removes it)."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if isinstance(self.classifier, nn.Linear):
            bound = 1.0 / num_classes**0.5
            nn.init.uniform_(self.classifier.weight, -bound, bound)
            nn.init.zeros_(self.classifier.bias)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's activations in the backward pass: less memory, ~30% more compute."""
        self.grad_checkpointing = enable

    @property
    def feature_info(self) -> list[dict[str, int]]:
        """Channels and stride of each map `feature_maps` returns (strides 2, 4, 8, 16, 32)."""
        info, reduction = [], 2 * (2 if self.spec.stem_pool else 1)
        for index, stage in enumerate(self.spec.stages):
            reduction *= stage.stride
            is_last_at_stride = index + 1 == len(self.spec.stages) or self.spec.stages[index + 1].stride > 1
            if is_last_at_stride:
                info.append({"stage": index, "channels": stage.out_channels, "reduction": reduction})
        return info

    # ---------------------------------------------------------------------------------------------- forward
    def _check_input(self, x: torch.Tensor) -> None:
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return
        if x.ndim != 4:
            raise ValueError(f"expected a batch of images shaped (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.spec.in_channels:
            raise ValueError(
                f"expected {self.spec.in_channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)}); "
                "convert grayscale/RGBA images to RGB first, e.g. PIL's image.convert('RGB')"
            )
        if min(x.shape[-2:]) < OUTPUT_STRIDE:
            raise ValueError(
                f"input {x.shape[-2]}x{x.shape[-1]} is too small: the network downsamples by {OUTPUT_STRIDE}, so "
                f"resize to at least {OUTPUT_STRIDE}x{OUTPUT_STRIDE} (native resolution: {self.spec.resolution})"
            )

    def _run_stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(stage, x, use_reentrant=False)
        return stage(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (after the head conv), before pooling."""
        self._check_input(x)
        x = self.stem_pool(self.stem(x))
        for stage in self.stages:
            x = self._run_stage(stage, x)
        return self.head(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, dropout and classify a feature map (pre_logits: stop before the classifier)."""
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return x if pre_logits else self.classifier(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Multi-scale maps at strides 2, 4, 8, 16, 32 for detection / segmentation necks."""
        self._check_input(x)
        wanted = {entry["stage"] for entry in self.feature_info}
        maps, x = [], self.stem_pool(self.stem(x))
        for index, stage in enumerate(self.stages):
            x = self._run_stage(stage, x)
            if index in wanted:
                maps.append(x)
        return maps
