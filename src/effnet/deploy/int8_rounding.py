"""Output-aware rounding of weights onto their int8 grid, from unlabelled calibration photos.

Post-training quantization rounds every weight to the nearest point of its grid (one scale per output channel,
`max |w| / 127`). Nearest is not best: what matters is the error of the layer's *output*,
`(q s - w)^T H (q s - w)` with `H = E[x x^T]` the second moment of the layer's input patches. On the
EfficientNet-Lite weights, nearest rounding of the BN-folded depthwise convs (9 or 25 taps per channel) alone moved
the top-1 class of ~6% of real photos (docs/deploy.md). Here each weight may go one grid step up or down from
nearest when that lowers the output error (coordinate descent on the exact quadratic, as in AdaRound / GPTQ,
without training); the grid itself is unchanged, so the backend's own quantizer later finds the same scale and
keeps these integers exactly. No labels are used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from effnet.deploy.export import fold_batchnorm
from effnet.models.layers.padding import Conv2dSame, same_padding

WEIGHT_LEVELS = 127  # symmetric narrow range [-127, 127], one scale per output channel (NNCF's weight default)


def _is_depthwise(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Conv2d) and layer.groups > 1 and layer.groups == layer.in_channels


def rounded_layers(model: nn.Module, float_ops: Sequence[str] = ()) -> list[nn.Module]:
    """The layers whose weights are rounded: linears, full convs and depthwise convs (other grouped convs are not).

    `float_ops` names the kinds an int8 export computes in float ("depthwise", "classifier": the linears), whose
    weights are left as they are.
    """
    return [
        m
        for m in model.modules()
        if (isinstance(m, nn.Linear) and "classifier" not in float_ops)
        or (isinstance(m, nn.Conv2d) and (m.groups == 1 or (_is_depthwise(m) and "depthwise" not in float_ops)))
    ]


def _patches(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as (groups, features, samples): what each output channel's weights multiply."""
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, x.shape[-1]).T[None]
    padding: tuple[int, ...] | str = layer.padding
    if isinstance(layer, Conv2dSame) and layer.needs_padding:
        top, bottom = same_padding(x.shape[-2], layer.kernel_size[0], layer.stride[0], layer.dilation[0])
        left, right = same_padding(x.shape[-1], layer.kernel_size[1], layer.stride[1], layer.dilation[1])
        x, padding = F.pad(x, (left, right, top, bottom)), 0
    patches = F.unfold(x, layer.kernel_size, layer.dilation, padding, layer.stride)  # (N, C*k*k, L)
    n, features, length = patches.shape
    if not _is_depthwise(layer):
        return patches.permute(1, 0, 2).reshape(1, features, n * length)
    channels = layer.in_channels
    return patches.view(n, channels, features // channels, length).permute(1, 2, 0, 3).reshape(channels, -1, n * length)


@torch.no_grad()
def input_moments(
    model: nn.Module, images: torch.Tensor, batch_size: int = 8, float_ops: Sequence[str] = ()
) -> dict[nn.Module, torch.Tensor]:
    """E[x x^T] of every rounded layer's input patches over `images`: (1 or channels, features, features)."""
    sums: dict[nn.Module, torch.Tensor] = {}
    counts: dict[nn.Module, int] = {}

    def record(layer: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        patches = _patches(layer, args[0])
        sums[layer] = sums.get(layer, 0) + (patches @ patches.transpose(1, 2)).double()
        counts[layer] = counts.get(layer, 0) + patches.shape[-1]

    hooks = [layer.register_forward_pre_hook(record) for layer in rounded_layers(model, float_ops)]
    try:
        for start in range(0, len(images), batch_size):
            model(images[start : start + batch_size])
    finally:
        for hook in hooks:
            hook.remove()
    return {layer: (total / counts[layer]).float() for layer, total in sums.items()}


@torch.no_grad()
def round_weight(weight: torch.Tensor, moment: torch.Tensor, sweeps: int = 4, damping: float = 0.01) -> torch.Tensor:
    """`weight` (out, ...) on its per-output-channel int8 grid, rounded to lower `(q s - w)^T H (q s - w)`.

    `moment` is H, shared (1, d, d) or one per output channel (out, d, d), d = weight[0].numel(). Starts from
    nearest rounding and moves single weights by one step while that lowers the error; the largest weight of each
    channel stays at +-127 so the channel's scale does not change.
    """
    w = weight.reshape(weight.shape[0], -1).double()
    h = moment.double()
    # A little ridge keeps directions the photos never excited from steering the rounding (GPTQ's 1% damping).
    diagonal = torch.diagonal(h, dim1=1, dim2=2)
    h = h + damping * diagonal.mean(1).clamp_min(1e-12)[:, None, None] * torch.eye(h.shape[-1], dtype=h.dtype)
    scale = w.abs().amax(1, keepdim=True).clamp_min(1e-12) / WEIGHT_LEVELS
    q = torch.round(w / scale).clamp(-WEIGHT_LEVELS, WEIGHT_LEVELS)
    pinned = q.abs() == WEIGHT_LEVELS  # the grid's end points define the scale
    grad = torch.einsum("cd,cde->ce", q * scale - w, h.expand(len(w), -1, -1)) if len(h) > 1 else (q * scale - w) @ h[0]
    for _ in range(sweeps):
        moved = 0
        for j in range(w.shape[1]):
            hjj = h[:, j, j]
            best = torch.zeros(len(w), dtype=w.dtype)
            step = torch.zeros(len(w), dtype=w.dtype)
            for direction in (-1.0, 1.0):
                delta = scale[:, 0] * direction
                gain = 2 * delta * grad[:, j] + delta**2 * hjj  # change of the quadratic error
                allowed = ~pinned[:, j] & ((q[:, j] + direction).abs() <= WEIGHT_LEVELS) & (gain < best)
                best = torch.where(allowed, gain, best)
                step = torch.where(allowed, torch.full_like(step, direction), step)
            if not bool(step.any()):
                continue
            q[:, j] += step
            moved += int(step.count_nonzero())
            grad += (scale[:, 0] * step)[:, None] * h[:, j, :]  # keep grad = E H exact after the move
        if moved == 0:
            break
    return (q * scale).reshape(weight.shape).to(weight.dtype)


def round_weights(
    model: nn.Module,
    images: np.ndarray,
    progress: Callable[[int, int], None] | None = None,
    sweeps: int = 4,
    float_ops: Sequence[str] = (),
) -> nn.Module:
    """A BN-folded copy of `model` whose weights lie on their int8 grid, rounded for its outputs on `images`.

    `images` are preprocessed photos (N, 3, H, W), no labels; 256 are plenty. `model` is left untouched. Layers of
    the `float_ops` kinds ("depthwise", "classifier") keep their weights: an int8 export computes them in float.
    """
    rounded = fold_batchnorm(model)  # a copy; an already folded model (effnet.deploy.quantize) is not folded again
    moments = input_moments(rounded, torch.from_numpy(np.ascontiguousarray(images)), float_ops=float_ops)
    layers = list(moments)
    for index, layer in enumerate(layers):
        layer.weight.data = round_weight(layer.weight.data, moments[layer], sweeps)
        if progress is not None:
            progress(index + 1, len(layers))
    return rounded
