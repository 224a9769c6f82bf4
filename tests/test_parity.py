"""Logit parity with timm and torchvision: a twin with random weights, saved to disk, loaded by effnet."""

import pytest
import timm
import torch
import torchvision

import effnet

TF = {"padding": "same", "norm_eps": 1e-3}  # timm's tf_* ports: TF "SAME" padding, BN eps 1e-3
TV_V1 = {"norm_eps": 1e-5}  # torchvision's B0-B4 use PyTorch's default BN eps ...
TV_V1_TF = {"norm_eps": 1e-3}  # ... and its B5-B7 (ported from TF) use 1e-3
TV_V2 = {"norm_eps": 1e-3}

# (effnet name, twin builder, effnet overrides). Big nets are marked slow: same code path, more memory.
TWINS = [
    *[(f"efficientnet_b{i}", f"timm:tf_efficientnet_b{i}", TF) for i in range(9)],
    *[(f"efficientnet_b{i}", f"torchvision:efficientnet_b{i}", TV_V1 if i < 5 else TV_V1_TF) for i in range(8)],
    ("efficientnet_b0", "timm:efficientnet_b0", {"norm_eps": 1e-5}),
    ("efficientnet_l2", "timm:tf_efficientnet_l2", TF),
    *[(f"efficientnetv2_{v}", f"timm:tf_efficientnetv2_{v}", TF) for v in ("b0", "b1", "b2", "b3", "s", "m", "l")],
    ("efficientnetv2_xl", "timm:tf_efficientnetv2_xl", TF),
    *[(f"efficientnetv2_{v}", f"torchvision:efficientnet_v2_{v}", TV_V2) for v in ("s", "m", "l")],
    *[(f"efficientnet_lite{i}", f"timm:tf_efficientnet_lite{i}", TF) for i in range(5)],
]
SLOW = {"efficientnet_b6", "efficientnet_b7", "efficientnet_b8", "efficientnet_l2", "efficientnetv2_l",
        "efficientnetv2_xl", "efficientnetv2_m"}


def _twin(source: str) -> torch.nn.Module:
    library, name = source.split(":")
    if library == "timm":
        return timm.create_model(name, pretrained=False)
    return getattr(torchvision.models, name)(weights=None)


def _calibrate_norms(model: torch.nn.Module, size: int) -> None:
    # With fresh BN statistics a deep random net's signal fades to ~1e-6, and any two nets "agree" within 1e-4.
    # Random affine BN parameters plus statistics measured on random images keep activations O(1), so a wrong
    # padding or BN eps moves the logits by ~1 (see test_wrong_settings_are_detectable).
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batch
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(module.num_features, generator=generator) * 0.2 - 0.1)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, size, size, generator=generator))
    model.eval()


def _saved_twin(source: str, tmp_path, size: int = 67):
    torch.manual_seed(0)
    twin = _twin(source)
    _calibrate_norms(twin, size)
    path = tmp_path / "twin.pth"
    torch.save(twin.state_dict(), path)
    return twin, path


@pytest.mark.parametrize(
    ("name", "source", "overrides"),
    [pytest.param(*t, marks=[pytest.mark.slow] if t[0] in SLOW else []) for t in TWINS],
    ids=[f"{t[0]}<-{t[1]}" for t in TWINS],
)
def test_logits_match_twin(name, source, overrides, tmp_path):
    twin, path = _saved_twin(source, tmp_path)
    model = effnet.create_model(name, weights=path, **overrides).eval()
    # An odd size exercises TF "SAME" padding's extra right/bottom pixel on every strided conv.
    x = torch.randn(2, 3, 67, 67)
    with torch.no_grad():
        ours, theirs = model(x), twin(x)
    assert theirs.std() > 0.05  # a non-degenerate comparison
    assert (ours - theirs).abs().max().item() < 1e-4


@pytest.mark.parametrize("wrong", [{"norm_eps": 1e-3}, {"padding": "same", "norm_eps": 1e-5}])
def test_wrong_settings_are_detectable(wrong, tmp_path):
    # The parity above is only meaningful if a wrong padding or BN eps moves the logits far beyond 1e-4.
    twin, path = _saved_twin("timm:tf_efficientnet_b0", tmp_path)
    model = effnet.create_model("efficientnet_b0", weights=path, **wrong).eval()
    x = torch.randn(2, 3, 67, 67)
    with torch.no_grad():
        assert (model(x) - twin(x)).abs().max().item() > 0.1
