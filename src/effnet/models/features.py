"""Backbone use: timm-style `feature_info` levels and their selection by `out_indices`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from effnet.models.specs import NetSpec


class FeatureInfo(list):
    """One dict per feature level (`num_chs`, `reduction`, `module`, `stage`), with timm's accessors."""

    def _get(self, key: str, idx: int | Sequence[int] | None) -> Any:
        if idx is None:
            return [entry[key] for entry in self]
        if isinstance(idx, int):
            return self[idx][key]
        return [self[i][key] for i in idx]

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        """Channels of level `idx` (all levels when None)."""
        return self._get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        """Stride relative to the input of level `idx` (all levels when None)."""
        return self._get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        """Name of the submodule whose output is level `idx` (e.g. "stages.2"; all levels when None)."""
        return self._get("module", idx)

    def return_layers(self, idx: Sequence[int] | None = None) -> dict[str, str]:
        """torchvision's `return_layers` for `EfficientNetFeatures.sequential()`: {"stages_2": "0", ...}."""
        names = self.module_name(list(range(len(self))) if idx is None else list(idx))
        return {name.replace(".", "_"): str(i) for i, name in enumerate(names)}

    def get_dicts(self) -> list[dict[str, Any]]:
        """The levels as plain dicts."""
        return [dict(entry) for entry in self]


def spec_feature_info(spec: NetSpec, output_stride: int = 32) -> FeatureInfo:
    """The last stage at each stride is one feature level (strides 2, 4, 8, 16, 32 for EfficientNet); with an
    `output_stride` of 8 or 16 the deeper levels keep that stride (their convs dilate instead)."""
    info, reduction = FeatureInfo(), 2 * (2 if spec.stem_pool else 1)
    for index, stage in enumerate(spec.stages):
        reduction = min(reduction * stage.stride, output_stride)
        is_last_at_stride = index + 1 == len(spec.stages) or spec.stages[index + 1].stride > 1
        if is_last_at_stride:
            info.append(
                {"num_chs": stage.out_channels, "reduction": reduction, "module": f"stages.{index}", "stage": index}
            )
    return info


def select_levels(info: FeatureInfo, out_indices: Sequence[int] | None) -> FeatureInfo:
    """The levels named by `out_indices` (negative indices count from the end; None: all)."""
    if out_indices is None:
        return FeatureInfo(info)
    levels = len(info)
    chosen = []
    for index in out_indices:
        if not -levels <= index < levels:
            raise ValueError(
                f"out_indices {tuple(out_indices)} out of range: this model has {levels} feature levels "
                f"(strides {info.reduction()}); use indices 0..{levels - 1}"
            )
        chosen.append(index % levels)
    if not chosen or sorted(set(chosen)) != chosen:
        raise ValueError(f"out_indices must be increasing and non-empty, got {tuple(out_indices)}")
    return FeatureInfo(info[i] for i in chosen)


def take_indices(levels: int, indices: int | Sequence[int] | None) -> list[int]:
    """timm's `indices` convention: None all levels, an int n the last n, a sequence those (negative from the end)."""
    if indices is None:
        return list(range(levels))
    if isinstance(indices, int):
        if not 0 < indices <= levels:
            raise ValueError(f"indices={indices}: the last n of {levels} feature levels needs n in 1..{levels}")
        return list(range(levels - indices, levels))
    chosen = []
    for index in indices:
        if not -levels <= index < levels:
            raise ValueError(f"index {index} out of range: this model has {levels} feature levels (0..{levels - 1})")
        chosen.append(index % levels)
    return chosen
