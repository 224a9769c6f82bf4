"""A memory-saving SiLU (Swish): an autograd function that keeps only its input for the backward pass."""

from __future__ import annotations

import torch
from torch import nn


class _SiLUFunction(torch.autograd.Function):
    """silu(x) = x * sigmoid(x); backward recomputes sigmoid(x) from x instead of storing intermediates."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        sig = torch.sigmoid(x)
        return grad_output * (sig * (1 + x * (1 - sig)))


def memory_efficient_silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU whose backward needs only the input tensor (one saved activation instead of two)."""
    return _SiLUFunction.apply(x)


class MemoryEfficientSiLU(nn.Module):
    """Module form of `memory_efficient_silu` (never in-place: its input is what backward needs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return memory_efficient_silu(x)


def use_memory_efficient_activations(model: nn.Module) -> int:
    """Swap every nn.SiLU in `model` for MemoryEfficientSiLU (same function); returns how many were swapped."""
    swapped = 0
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.SiLU):
                setattr(parent, name, MemoryEfficientSiLU())
                swapped += 1
    return swapped
