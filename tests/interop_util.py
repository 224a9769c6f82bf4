"""Helpers of the interop tests (not a test module): random weights worth comparing, and the comparison."""

from __future__ import annotations

import torch


def calibrate_norms(model: torch.nn.Module, size: int = 67, in_channels: int = 3) -> torch.nn.Module:
    """Random BN affine parameters and statistics measured on random images, in eval mode.

    With fresh statistics a deep random net's logits are ~1e-6 and agree with anything; these give O(1) logits
    that a wrong padding or BN eps moves.
    """
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average over the calibration batch
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(module.num_features, generator=generator) * 0.2 - 0.1)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, in_channels, size, size, generator=generator))
    return model.eval()


def assert_same_logits(ours: torch.Tensor, theirs: torch.Tensor, tolerance: float = 1e-5) -> float:
    """Max |difference| relative to the logits' spread (which must be far from degenerate); returns it."""
    spread = theirs.std().item()
    assert spread > 0.05, f"degenerate logits (std {spread:.2e}): the comparison would mean nothing"
    relative = (ours - theirs).abs().max().item() / spread
    assert relative < tolerance, f"max |diff| / std = {relative:.2e}"
    return relative
