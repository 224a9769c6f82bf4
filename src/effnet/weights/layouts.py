"""State-dict name layouts of other EfficientNet implementations, mapped onto effnet's module names.

effnet's names follow its module tree (`stages.1.0.dw.conv.weight`). For each foreign layout we walk effnet's own
blocks and say where each of their convs / norms lives in the other implementation, so the mapping is explicit
and a reader can check it against the other code base.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from torch import nn

from effnet.models.layers import FusedMBConv, MBConv, SqueezeExcite

if TYPE_CHECKING:
    from effnet.models.net import EfficientNet

LAYOUT_MARKERS = {
    "effnet": "stem.conv.weight",
    "timm": "conv_stem.weight",
    "torchvision": "features.0.0.weight",
    "efficientnet-pytorch": "_conv_stem.weight",
}

# Where each layout keeps its classifier's weight (rows = number of classes).
CLASSIFIER_KEYS = {
    "effnet": "classifier.weight",
    "timm": "classifier.weight",
    "torchvision": "classifier.1.weight",
    "efficientnet-pytorch": "_fc.weight",
}


def detect_layout(keys: set[str]) -> str:
    """Which implementation saved a state dict, from a key only that layout has."""
    for layout, marker in LAYOUT_MARKERS.items():
        if marker in keys:
            return layout
    sample = ", ".join(sorted(keys)[:5])
    raise ValueError(
        f"unrecognized weight layout (first keys: {sample}); effnet reads state dicts saved by effnet, timm, "
        "torchvision or efficientnet-pytorch (lukemelas)"
    )


def _units(block: nn.Module) -> Iterator[tuple[str, str]]:
    """(effnet sub-module, role) of a block's parameterized parts, in forward order."""
    roles = {"expand": "expand", "dw": "dw", "se": "se", "project": "project"}
    for name, role in roles.items():
        module = getattr(block, name, None)
        if module is None or isinstance(module, nn.Identity):
            continue
        yield name, role


def _blocks(model: EfficientNet) -> Iterator[tuple[int, int, int, nn.Module]]:
    flat = 0
    for stage_index, stage in enumerate(model.stages):
        for block_index, block in enumerate(stage.children()):
            if not isinstance(block, (MBConv, FusedMBConv)):
                raise ValueError(
                    f"{type(block).__name__} blocks exist only in effnet's own layout; save/load them with effnet"
                )
            yield stage_index, block_index, flat, block
            flat += 1


def _timm_block(block: nn.Module) -> dict[str, str]:
    has_expand = not isinstance(block.expand, nn.Identity)
    if isinstance(block, MBConv) and has_expand:  # timm InvertedResidual
        convs = {"expand": ("conv_pw", "bn1"), "dw": ("conv_dw", "bn2"), "project": ("conv_pwl", "bn3")}
    elif isinstance(block, MBConv):  # timm DepthwiseSeparableConv
        convs = {"dw": ("conv_dw", "bn1"), "project": ("conv_pw", "bn2")}
    elif not isinstance(block.project, nn.Identity):  # timm EdgeResidual
        convs = {"expand": ("conv_exp", "bn1"), "project": ("conv_pwl", "bn2")}
    else:  # timm ConvBnAct
        convs = {"expand": ("conv", "bn1")}
    return _conv_pairs(convs) | {"se.reduce": "se.conv_reduce", "se.expand": "se.conv_expand"}


def _torchvision_block(block: nn.Module) -> dict[str, str]:
    names: dict[str, str] = {}
    for position, (name, role) in enumerate(_units(block)):
        if isinstance(getattr(block, name), SqueezeExcite):
            names |= {"se.reduce": f"block.{position}.fc1", "se.expand": f"block.{position}.fc2"}
        else:
            names |= _conv_pairs({role: (f"block.{position}.0", f"block.{position}.1")})
    return names


def _lukemelas_block(block: nn.Module) -> dict[str, str]:
    convs = {
        "expand": ("_expand_conv", "_bn0"),
        "dw": ("_depthwise_conv", "_bn1"),
        "project": ("_project_conv", "_bn2"),
    }
    return _conv_pairs(convs) | {"se.reduce": "_se_reduce", "se.expand": "_se_expand"}


def _conv_pairs(convs: dict[str, tuple[str, str]]) -> dict[str, str]:
    pairs = {}
    for role, (conv, norm) in convs.items():
        pairs[f"{role}.conv"] = conv
        pairs[f"{role}.bn"] = norm
    return pairs


def _model_level(layout: str, num_stages: int) -> dict[str, str]:
    return {
        "timm": {
            "stem.conv": "conv_stem",
            "stem.bn": "bn1",
            "head.conv": "conv_head",
            "head.bn": "bn2",
            "classifier": "classifier",
        },
        "torchvision": {
            "stem.conv": "features.0.0",
            "stem.bn": "features.0.1",
            "head.conv": f"features.{num_stages + 1}.0",
            "head.bn": f"features.{num_stages + 1}.1",
            "classifier": "classifier.1",
        },
        "efficientnet-pytorch": {
            "stem.conv": "_conv_stem",
            "stem.bn": "_bn0",
            "head.conv": "_conv_head",
            "head.bn": "_bn1",
            "classifier": "_fc",
        },
    }[layout]


_BLOCK_TABLES: dict[str, tuple[Callable[[nn.Module], dict[str, str]], Callable[[int, int, int], str]]] = {
    "timm": (_timm_block, lambda stage, block, flat: f"blocks.{stage}.{block}."),
    "torchvision": (_torchvision_block, lambda stage, block, flat: f"features.{stage + 1}.{block}."),
    "efficientnet-pytorch": (_lukemelas_block, lambda stage, block, flat: f"_blocks.{flat}."),
}


def module_map(model: EfficientNet, layout: str) -> dict[str, str]:
    """effnet module prefix -> the same module's prefix in `layout`."""
    if layout == "effnet":
        return {}
    table, block_prefix = _BLOCK_TABLES[layout]
    mapping = dict(_model_level(layout, len(model.stages)))
    for stage, index, flat, block in _blocks(model):
        ours = f"stages.{stage}.{index}."
        theirs = block_prefix(stage, index, flat)
        mapping |= {ours + local: theirs + foreign for local, foreign in table(block).items()}
    return mapping


def rename_to_effnet(model: EfficientNet, layout: str) -> dict[str, str]:
    """For every key of `model.state_dict()`, the key that holds it in a `layout` state dict."""
    prefixes = module_map(model, layout)
    names = {}
    for key in model.state_dict():
        module, _, leaf = key.rpartition(".")
        names[key] = f"{prefixes[module]}.{leaf}" if module in prefixes else key
    return names
