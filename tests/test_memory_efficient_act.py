"""--memory-efficient-act: the fused BN + SiLU keeps one map instead of two per unit, with the same numbers."""

import copy

import pytest
import torch
from torch import nn

import effnet
from effnet.models.layers.activations import _BatchNormSiLU, batch_norm_silu
from effnet.models.layers.conv_norm_act import use_memory_efficient_activations


def _saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(x)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in storages.items() if ptr not in params)


def test_fused_batch_norm_silu_gradients_and_running_stats():
    x = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.rand(2, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, dtype=torch.float64, requires_grad=True)

    def fused(x, weight, bias):
        return _BatchNormSiLU.apply(
            x, weight, bias, torch.zeros(2, dtype=x.dtype), torch.ones(2, dtype=x.dtype), 0.1, 1e-3
        )

    assert torch.autograd.gradcheck(fused, (x, weight, bias))
    reference, fused_bn = nn.BatchNorm2d(3, eps=1e-3, momentum=0.01), nn.BatchNorm2d(3, eps=1e-3, momentum=0.01)
    y = torch.randn(8, 3, 6, 6)
    torch.testing.assert_close(batch_norm_silu(y, fused_bn), nn.functional.silu(reference(y)))
    assert torch.equal(fused_bn.running_mean, reference.running_mean)
    assert torch.equal(fused_bn.running_var, reference.running_var)
    assert fused_bn.num_batches_tracked == reference.num_batches_tracked == 1


def test_memory_efficient_act_saves_a_quarter_of_b0s_saved_tensors():
    torch.manual_seed(0)
    # B0's structure at half width (the ratio depends on the layout, not the width), small for CPU speed.
    spec = effnet.scale(effnet.get_spec("efficientnet_b0"), width=0.5).replace(drop_path_rate=0.0, dropout=0.0)
    plain = effnet.create_model(spec).train()
    saving = copy.deepcopy(plain)
    assert use_memory_efficient_activations(saving) == 33  # stem, head, and expand + depthwise of each block
    x = torch.randn(2, 3, 64, 64)
    ratio = _saved_bytes(saving, x) / _saved_bytes(plain, x)
    assert ratio < 0.8  # measured 0.72 at 224 px (BENCHMARKS.md)
    # Same forward, same gradients, same BN statistics afterwards.
    losses = [model(x).logsumexp(1).mean() for model in (plain, saving)]
    assert losses[0].item() == pytest.approx(losses[1].item(), rel=1e-6)
    for loss in losses:
        loss.backward()
    for (name, a), b in zip(plain.named_parameters(), saving.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)
    for (name, a), b in zip(plain.named_buffers(), saving.buffers(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    # Eval mode, no grad, autocast: the plain path (nothing to save there).
    saving.eval()
    with torch.no_grad():
        torch.testing.assert_close(saving(x), plain.eval()(x))
