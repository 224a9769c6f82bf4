"""Typed, frozen network specs and the base tables (EfficientNet B0, V2, Lite; ResNet-50 and MobileNetV2).

A spec is plain data: the builder in `net.py` turns it into modules, `scaling.py` turns one spec into another.
Every table is a literal a reader can check against the paper at a glance.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from effnet._util.filecheck import build, parse_json, read_text
from effnet._util.fileio import write_text_atomic
from effnet._util.validation import check_field_types

BLOCK_TYPES = ("mbconv", "fused", "bottleneck")
# Bounds on a spec read from data (a file): the largest published networks have 7 stages, 92 blocks and 2560
# channels; a spec past these is a mistake or an attack that would allocate without limit or build for hours.
MAX_STAGES = 64
MAX_BLOCKS = 4096
MAX_CHANNELS = 65_536
MAX_EXPAND_RATIO = 64
MAX_WEIGHTS = 2**31  # 8 GB of float32 weights; V2-XL has 208M


@dataclass(frozen=True)
class StageSpec:
    """One stage: `num_layers` blocks of one type; only the first block strides and changes width."""

    block: str
    expand_ratio: float
    kernel_size: int
    stride: int
    out_channels: int
    num_layers: int
    se_ratio: float = 0.0

    def __post_init__(self) -> None:
        check_field_types(self, coerce=False)
        if self.block not in BLOCK_TYPES:
            raise ValueError(f"block must be one of {BLOCK_TYPES}, got {self.block!r}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {self.kernel_size}")
        if self.stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {self.stride}")
        if self.out_channels < 1 or self.num_layers < 1 or self.expand_ratio <= 0:
            raise ValueError(f"out_channels, num_layers and expand_ratio must be positive in {self}")
        if not 0.0 <= self.se_ratio <= 1.0:
            raise ValueError(f"se_ratio must be in [0, 1] (0 = no squeeze-excite), got {self.se_ratio}")

    def summary(self) -> str:
        """Compact form, e.g. `mbconv6 k5 s2 c40 x2 se0.25`."""
        se = f" se{self.se_ratio:g}" if self.se_ratio > 0 else ""
        return (
            f"{self.block}{self.expand_ratio:g} k{self.kernel_size} s{self.stride} "
            f"c{self.out_channels} x{self.num_layers}{se}"
        )


@dataclass(frozen=True)
class ScalingRules:
    """How a base network scales: channel rounding and what stays fixed."""

    channel_divisor: int = 8
    # Rounding may not lose more than 10% of the channels (TF reference); 0 turns the check off (V2-base).
    round_limit: float = 0.9
    scale_stem: bool = True
    scale_head: bool = True
    # Stages whose repeats are never scaled (Lite keeps its first and last stage).
    fixed_depth_stages: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_field_types(self, coerce=False)
        if self.channel_divisor < 1 or not 0.0 <= self.round_limit <= 1.0:
            raise ValueError(f"channel_divisor must be >= 1 and round_limit in [0, 1], got {self}")


@dataclass(frozen=True)
class NetSpec:
    """A whole network: stem, stages, head, layer settings, regularization and native resolution."""

    name: str
    stages: tuple[StageSpec, ...]
    stem_channels: int = 32
    head_channels: int | None = 1280  # None: no 1x1 head conv (ResNet)
    stem_kernel_size: int = 3
    stem_pool: bool = False  # ResNet's 3x3/2 max pool after the stem
    activation: str = "silu"
    norm_eps: float = 1e-3
    norm_momentum: float = 0.01  # PyTorch convention: TF's decay 0.99
    padding: str = "symmetric"  # "same" for weights ported from TensorFlow
    dropout: float = 0.2
    drop_path_rate: float = 0.2
    resolution: int = 224  # native (evaluation) resolution
    train_resolution: int | None = None  # V2 trains smaller than it evaluates
    width_mult: float = 1.0
    depth_mult: float = 1.0
    in_channels: int = 3
    rules: ScalingRules = field(default_factory=ScalingRules)

    def __post_init__(self) -> None:
        check_field_types(self, coerce=False)
        if not self.stages:
            raise ValueError("a NetSpec needs at least one stage")
        checks = [
            (self.stem_channels >= 1 and self.in_channels >= 1, "stem_channels and in_channels must be >= 1"),
            (self.head_channels is None or self.head_channels >= 1, "head_channels must be >= 1 (or null: none)"),
            (self.stem_kernel_size >= 1 and self.stem_kernel_size % 2 == 1, "stem_kernel_size must be positive, odd"),
            (self.norm_eps > 0 and 0 < self.norm_momentum <= 1, "norm_eps must be > 0 and norm_momentum in (0, 1]"),
            (self.resolution >= 1 and (self.train_resolution or 1) >= 1, "resolutions must be >= 1 pixel"),
            (self.width_mult > 0 and self.depth_mult > 0, "width_mult and depth_mult must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"spec {self.name!r}: {message}")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"dropout and drop_path_rate must be in [0, 1) (got {self.dropout}, "
                             f"{self.drop_path_rate})")
        if self.padding not in ("symmetric", "same"):
            raise ValueError(f"padding must be 'symmetric' or 'same', got {self.padding!r}")

    @property
    def num_blocks(self) -> int:
        """Total number of blocks over all stages."""
        return sum(stage.num_layers for stage in self.stages)

    @property
    def num_features(self) -> int:
        """Channels entering the classifier."""
        return self.head_channels or self.stages[-1].out_channels

    @property
    def is_v2(self) -> bool:
        """Whether the spec is of the EfficientNetV2 family (V2-B0..B3 and S/M/L/XL): it has Fused-MBConv stages."""
        return any(stage.block == "fused" for stage in self.stages)

    def replace(self, **changes: Any) -> NetSpec:
        """A copy with some fields changed (validated like a new spec)."""
        return replace(self, **changes)

    def summary(self) -> str:
        """A compact, readable description: one line of settings, one line per stage."""
        head = f"head {self.head_channels}" if self.head_channels else "no head conv"
        lines = [
            f"{self.name}: stem {self.stem_channels}, {head}, {self.activation}, res {self.resolution}"
            + (f" (train {self.train_resolution})" if self.train_resolution else "")
            + f", width x{self.width_mult:g}, depth x{self.depth_mult:g}",
            f"  dropout {self.dropout:g}, drop path {self.drop_path_rate:g}, BN eps {self.norm_eps:g}"
            f" momentum {self.norm_momentum:g}, padding {self.padding}",
        ]
        lines += [f"  stage {i}: {stage.summary()}" for i, stage in enumerate(self.stages)]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetSpec:
        """Inverse of `to_dict`; unknown or missing keys and wrong types are a ValueError naming them."""
        if not isinstance(data, dict):
            raise ValueError(f"a spec must be a mapping of NetSpec fields, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown NetSpec fields {sorted(unknown)}; expected a subset of {sorted(known)}")
        values = dict(data)
        stages = data.get("stages")
        if not isinstance(stages, (list, tuple)) or not all(isinstance(stage, dict) for stage in stages):
            raise ValueError("a spec's stages must be a list of stage mappings (block, expand_ratio, kernel_size, "
                             f"stride, out_channels, num_layers, se_ratio), got {stages!r:.80}")
        if len(stages) > MAX_STAGES:
            raise ValueError(f"a spec has at most {MAX_STAGES} stages, got {len(stages)}")
        try:
            values["stages"] = tuple(StageSpec(**stage) for stage in stages)
            if "rules" in values:
                rules = dict(values["rules"])
                rules["fixed_depth_stages"] = tuple(rules.get("fixed_depth_stages", ()))
                values["rules"] = ScalingRules(**rules)
            spec = cls(**values)
        except TypeError as err:  # a missing or misspelled field
            raise ValueError(f"invalid spec: {err}") from None
        _check_bounds(spec)
        return spec

    def save(self, path: str | Path) -> Path:
        """Write the spec as JSON (what `effnet scale` produces and `create_model` builds from)."""
        return write_text_atomic(path, json.dumps({"effnet_spec": self.to_dict()}, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> NetSpec:
        """Read a spec written by `save`."""
        path = Path(path)
        data = parse_json(read_text(path, "spec file"), "(its JSON)", path)
        if not isinstance(data, dict) or not isinstance(data.get("effnet_spec"), dict):
            raise ValueError(f"{path} is not an effnet spec file (write one with `effnet scale ... --out`)")
        return build(cls.from_dict, data["effnet_spec"], path, "effnet_spec")


def _check_bounds(spec: NetSpec) -> None:
    """Refuse a spec whose size no machine could build (see MAX_BLOCKS); checked before any layer exists."""
    widths = {
        "stem_channels": spec.stem_channels,
        "head_channels": spec.head_channels or 1,
        "in_channels": spec.in_channels,
    }
    widths |= {f"stages[{i}].out_channels": stage.out_channels for i, stage in enumerate(spec.stages)}
    for name, width in widths.items():
        if width > MAX_CHANNELS:
            raise ValueError(f"{name} must be at most {MAX_CHANNELS}, got {width}")
    if spec.num_blocks > MAX_BLOCKS:
        raise ValueError(f"a spec has at most {MAX_BLOCKS} blocks in all, got {spec.num_blocks}")
    ratio = max(stage.expand_ratio for stage in spec.stages)
    if ratio > MAX_EXPAND_RATIO:
        raise ValueError(f"expand_ratio must be at most {MAX_EXPAND_RATIO}, got {ratio:g}")
    weights = _weight_count(spec)
    if weights > MAX_WEIGHTS:
        raise ValueError(f"a spec builds at most {MAX_WEIGHTS:,} weights, this one about {weights:,}")
    if spec.resolution > 16_384 or (spec.train_resolution or 0) > 16_384:
        raise ValueError(f"resolutions must be at most 16384 pixels, got {spec.resolution}")


def _weight_count(spec: NetSpec) -> int:
    """The convolution weights a spec builds (BN, biases and the classifier left out), from its widths alone."""
    total, channels = spec.in_channels * spec.stem_channels * spec.stem_kernel_size**2, spec.stem_channels
    for stage in spec.stages:
        for index in range(min(stage.num_layers, 2)):  # blocks after the first are alike
            inner, out, k2 = channels, stage.out_channels, stage.kernel_size**2
            if stage.block == "bottleneck":
                mid = int(out * stage.expand_ratio)
                block = inner * mid + mid * mid * k2 + mid * out
            else:
                mid = int(inner * stage.expand_ratio)
                squeeze = 2 * mid * max(1, int(inner * stage.se_ratio)) if stage.se_ratio else 0
                expand = inner * mid * (k2 if stage.block == "fused" else 1) if stage.expand_ratio != 1 else 0
                block = expand + (mid * k2 if stage.block == "mbconv" else 0) + squeeze + mid * out
            total += block * (1 if index == 0 else stage.num_layers - 1)
            channels = out
    return total + channels * (spec.head_channels or 0)


# EfficientNet-B0, paper Table 1 (the NAS-found baseline).
B0_STAGES = (
    #         block     expand kernel stride out  layers se
    StageSpec("mbconv", 1,     3,     1,     16,  1,     0.25),
    StageSpec("mbconv", 6,     3,     2,     24,  2,     0.25),
    StageSpec("mbconv", 6,     5,     2,     40,  2,     0.25),
    StageSpec("mbconv", 6,     3,     2,     80,  3,     0.25),
    StageSpec("mbconv", 6,     5,     1,     112, 3,     0.25),
    StageSpec("mbconv", 6,     5,     2,     192, 4,     0.25),
    StageSpec("mbconv", 6,     3,     1,     320, 1,     0.25),
)  # 5,288,548 params, 0.39B multiply-adds at 224

B0 = NetSpec("efficientnet_b0", B0_STAGES, stem_channels=32, head_channels=1280)

# Lite: B0 without SE, ReLU6, and a stem/head and first/last stage depth that never scale (mobile friendly).
LITE0 = NetSpec(
    "efficientnet_lite0",
    tuple(replace(stage, se_ratio=0.0) for stage in B0_STAGES),
    activation="relu6",
    rules=ScalingRules(scale_stem=False, scale_head=False, fixed_depth_stages=(0, 6)),
)  # 4,652,008 params

# EfficientNetV2 (Tan & Le 2021, Table 4 and the reference code). All kernels 3x3.
V2_S_STAGES = (
    #         block     expand kernel stride out  layers se
    StageSpec("fused",  1,     3,     1,     24,  2),
    StageSpec("fused",  4,     3,     2,     48,  4),
    StageSpec("fused",  4,     3,     2,     64,  4),
    StageSpec("mbconv", 4,     3,     2,     128, 6,     0.25),
    StageSpec("mbconv", 6,     3,     1,     160, 9,     0.25),
    StageSpec("mbconv", 6,     3,     2,     256, 15,    0.25),
)  # 21,458,488 params

V2_M_STAGES = (
    StageSpec("fused",  1,     3,     1,     24,  3),
    StageSpec("fused",  4,     3,     2,     48,  5),
    StageSpec("fused",  4,     3,     2,     80,  5),
    StageSpec("mbconv", 4,     3,     2,     160, 7,     0.25),
    StageSpec("mbconv", 6,     3,     1,     176, 14,    0.25),
    StageSpec("mbconv", 6,     3,     2,     304, 18,    0.25),
    StageSpec("mbconv", 6,     3,     1,     512, 5,     0.25),
)  # 54,139,356 params

V2_L_STAGES = (
    StageSpec("fused",  1,     3,     1,     32,  4),
    StageSpec("fused",  4,     3,     2,     64,  7),
    StageSpec("fused",  4,     3,     2,     96,  7),
    StageSpec("mbconv", 4,     3,     2,     192, 10,    0.25),
    StageSpec("mbconv", 6,     3,     1,     224, 19,    0.25),
    StageSpec("mbconv", 6,     3,     2,     384, 25,    0.25),
    StageSpec("mbconv", 6,     3,     1,     640, 7,     0.25),
)  # 118,515,272 params

V2_XL_STAGES = (
    StageSpec("fused",  1,     3,     1,     32,  4),
    StageSpec("fused",  4,     3,     2,     64,  8),
    StageSpec("fused",  4,     3,     2,     96,  8),
    StageSpec("mbconv", 4,     3,     2,     192, 16,    0.25),
    StageSpec("mbconv", 6,     3,     1,     256, 24,    0.25),
    StageSpec("mbconv", 6,     3,     2,     512, 32,    0.25),
    StageSpec("mbconv", 6,     3,     1,     640, 8,     0.25),
)  # 208,119,808 params

# V2-base, the starting point of V2-B0..B3, scaled V1-style but without the 10% rounding rule.
V2_BASE_STAGES = (
    StageSpec("fused",  1,     3,     1,     16,  1),
    StageSpec("fused",  4,     3,     2,     32,  2),
    StageSpec("fused",  4,     3,     2,     48,  2),
    StageSpec("mbconv", 4,     3,     2,     96,  3,     0.25),
    StageSpec("mbconv", 6,     3,     1,     112, 5,     0.25),
    StageSpec("mbconv", 6,     3,     2,     192, 8,     0.25),
)  # 7,139,704 params

# V2 BN momentum: automl hparams bn_momentum=0.9 in TF terms (decay), PyTorch 0.1 -- V1 uses 0.99 (PyTorch 0.01).
V2_BASE = NetSpec(
    "efficientnetv2_b0",
    V2_BASE_STAGES,
    stem_channels=32,
    norm_momentum=0.1,
    resolution=224,
    train_resolution=192,
    rules=ScalingRules(round_limit=0.0),
)

V2_S = NetSpec("efficientnetv2_s", V2_S_STAGES, stem_channels=24, norm_momentum=0.1, resolution=384,
               train_resolution=300)
V2_M = NetSpec("efficientnetv2_m", V2_M_STAGES, stem_channels=24, norm_momentum=0.1, dropout=0.3, resolution=480,
               train_resolution=384)
V2_L = NetSpec("efficientnetv2_l", V2_L_STAGES, stem_channels=32, norm_momentum=0.1, dropout=0.4, resolution=480,
               train_resolution=384)
V2_XL = NetSpec("efficientnetv2_xl", V2_XL_STAGES, stem_channels=32, norm_momentum=0.1, dropout=0.4,
                resolution=512, train_resolution=384)

# Other base networks the scaling engine applies to (paper Table 3). Both match torchvision at scale 1.
MOBILENETV2 = NetSpec(
    "mobilenetv2",
    (
        #         block     expand kernel stride out  layers
        StageSpec("mbconv", 1,     3,     1,     16,  1),
        StageSpec("mbconv", 6,     3,     2,     24,  2),
        StageSpec("mbconv", 6,     3,     2,     32,  3),
        StageSpec("mbconv", 6,     3,     2,     64,  4),
        StageSpec("mbconv", 6,     3,     1,     96,  3),
        StageSpec("mbconv", 6,     3,     2,     160, 3),
        StageSpec("mbconv", 6,     3,     1,     320, 1),
    ),
    activation="relu6",
    norm_eps=1e-5,
    norm_momentum=0.1,
    drop_path_rate=0.0,
)  # 3,504,872 params

RESNET50 = NetSpec(
    "resnet50",
    (
        #         block         ratio kernel stride out   layers
        StageSpec("bottleneck", 0.25, 3,     1,     256,  3),
        StageSpec("bottleneck", 0.25, 3,     2,     512,  4),
        StageSpec("bottleneck", 0.25, 3,     2,     1024, 6),
        StageSpec("bottleneck", 0.25, 3,     2,     2048, 3),
    ),
    stem_channels=64,
    stem_kernel_size=7,
    stem_pool=True,
    head_channels=None,
    activation="relu",
    norm_eps=1e-5,
    norm_momentum=0.1,
    dropout=0.0,
    drop_path_rate=0.0,
)  # 25,557,032 params
