"""Memory-efficient BatchNorm + SiLU: the pair keeps only the BN input for backward and recomputes the rest.

In a conv -> BN -> SiLU unit autograd normally keeps three maps: the conv's input, the BN's input (the conv
output) and the SiLU's input (the BN output). A SiLU that "saves only its input" keeps nothing less than
PyTorch's own `F.silu` already does (measured: the same bytes), because the BN output it keeps is a tensor of its
own, not one that is shared. Fusing BN and SiLU into one autograd function removes that third map: backward
recomputes the BN output from the BN input and the batch statistics (cheap, elementwise) and then the sigmoid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _BatchNormSiLU(torch.autograd.Function):
    """silu(batch_norm(x)) in training mode, saving x and the per-channel batch statistics only."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):  # type: ignore[override]
        # native_batch_norm updates running_mean / running_var in place exactly as nn.BatchNorm2d does.
        normed, mean, invstd = torch.ops.aten.native_batch_norm(
            x, weight, bias, running_mean, running_var, True, momentum, eps
        )
        ctx.save_for_backward(x, weight, bias, mean, invstd)
        ctx.eps = eps
        return F.silu(normed, inplace=True)  # `normed` is not kept, so it can hold the output

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        x, weight, bias, mean, invstd = ctx.saved_tensors
        shape = (1, -1) + (1,) * (x.dim() - 2)
        # The BN output, recomputed in place in one buffer; then SiLU's own backward kernel (one more buffer).
        normed = x.sub(mean.reshape(shape)).mul_((invstd * weight).reshape(shape)).add_(bias.reshape(shape))
        grad_normed = torch.ops.aten.silu_backward(grad_output, normed)
        del normed
        grad_x, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
            grad_normed, x, weight, None, None, mean, invstd, True, ctx.eps, list(ctx.needs_input_grad[:3])
        )
        return grad_x, grad_weight, grad_bias, None, None, None, None


def batch_norm_silu(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """silu(bn(x)) for a training-mode BatchNorm2d, keeping one map for backward instead of two."""
    assert bn.running_mean is not None and bn.running_var is not None and bn.momentum is not None
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)  # as nn.BatchNorm2d.forward does in training
    return _BatchNormSiLU.apply(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.momentum, bn.eps)


def fused_path_applies(bn: nn.Module, act: nn.Module, x: torch.Tensor) -> bool:
    """Whether `batch_norm_silu` can stand in for act(bn(x)): a plain training BN with stats, SiLU, grad on."""
    return (
        type(bn) is nn.BatchNorm2d  # not SyncBatchNorm (DDP) or an Identity (folded for export)
        and bn.training
        and bn.track_running_stats
        and bn.momentum is not None
        and isinstance(act, nn.SiLU)
        and torch.is_grad_enabled()
        and not torch.is_autocast_enabled(x.device.type)  # autocast picks BN dtypes itself; keep its path
    )
