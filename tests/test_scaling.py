"""The scaling engine: rounding rules, compound scaling at any phi, coefficient checks, the published table."""

import math

import pytest

import effnet
from effnet.models.complexity import count_macs
from effnet.models.scaling import PUBLISHED, check_coefficients, round_channels, round_repeats
from effnet.models.specs import B0


def test_round_channels_rules():
    assert round_channels(32 * 1.1) == 32  # int(35.2 + 4) // 8 * 8
    assert round_channels(16 * 1.4) == 24
    assert round_channels(3.0) == 8  # never below the divisor
    # The 10% rule: 17 -> 16 is kept (16 >= 0.9 * 17), 18 -> 16 would lose 11%, so it goes up to 24.
    assert round_channels(17) == 16
    assert round_channels(18) == 24
    assert round_channels(11, round_limit=0.9) == 16  # 8 < 0.9 * 11 -> bumped
    assert round_channels(11, round_limit=0.0) == 8


def test_round_repeats():
    assert round_repeats(3, 1.1) == 4  # ceil, as in the TF reference
    assert round_repeats(1, 0.3) == 1
    assert round_repeats(3, 1.1, "round") == 3
    with pytest.raises(ValueError, match="depth rounding"):
        round_repeats(3, 1.1, "floor")


def test_compound_scale_applies_formula():
    spec = effnet.compound_scale(B0, 2.0)
    assert spec.width_mult == pytest.approx(1.1**2) and spec.depth_mult == pytest.approx(1.2**2)
    assert spec.resolution == 296  # 224 * 1.15^2 = 296.2, rounded to a multiple of 8
    assert [s.num_layers for s in spec.stages] == [math.ceil(s.num_layers * 1.44) for s in B0.stages]
    assert spec.stages[-1].out_channels == round_channels(320 * 1.21)


@pytest.mark.parametrize("phi", [1.0, 2.0, 3.0])
def test_compound_scale_macs_grow_like_two_to_phi(phi):
    base = count_macs(B0)
    ratio = count_macs(effnet.compound_scale(B0, phi)) / base
    assert ratio == pytest.approx(2**phi, rel=0.2)


def test_fractional_phi_with_nearest_depth_rounding():
    # ceil adds a whole block to every 1-block stage as soon as depth > 1, so phi = 0.5 lands at 1.9x with the
    # paper's rule; nearest rounding keeps fractional phi on the 2^phi curve.
    base = count_macs(B0)
    nearest = count_macs(effnet.compound_scale(B0, 0.5, depth_rounding="round")) / base
    assert nearest == pytest.approx(2**0.5, rel=0.2)
    ceil = count_macs(effnet.compound_scale(B0, 0.5)) / base
    assert ceil > nearest


def test_negative_phi_makes_smaller_networks():
    small = effnet.compound_scale(B0, -1.5)
    assert count_macs(small) < 0.7 * count_macs(B0)
    assert small.resolution < B0.resolution
    assert all(s.num_layers >= 1 and s.out_channels >= 8 for s in small.stages)
    model = effnet.create_model(small, num_classes=5)
    assert model.spec == small


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"phi": float("nan")}, "phi must be a finite"),
        ({"phi": float("inf")}, "phi must be a finite"),
        ({"phi": "2"}, "phi must be a finite"),
        ({"phi": 1, "alpha": 0.9}, "alpha=0.9 < 1"),
        ({"phi": 1, "gamma": float("nan")}, "gamma must be a finite"),
        ({"phi": 1, "alpha": 1.5, "beta": 1.5}, "more than 10% away from 2"),
    ],
)
def test_bad_coefficients_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        effnet.compound_scale(B0, **kwargs)


def test_ratio_check_can_be_waived():
    assert check_coefficients(1.5, 1.5, 1.5, allow_any_ratio=True) == pytest.approx(1.5**5)
    spec = effnet.compound_scale(B0, 1, 1.5, 1.5, 1.5, allow_any_ratio=True)
    assert spec.depth_mult == 1.5


def test_single_dimension_scaling():
    wide = effnet.scale(B0, width=2.0)
    assert [s.num_layers for s in wide.stages] == [s.num_layers for s in B0.stages]
    assert wide.resolution == B0.resolution and wide.stem_channels == 64
    deep = effnet.scale(B0, depth=2.0)
    assert [s.out_channels for s in deep.stages] == [s.out_channels for s in B0.stages]
    assert effnet.scale(B0, resolution=2.0).resolution == 448
    with pytest.raises(ValueError, match="width multiplier"):
        effnet.scale(B0, width=0)


def test_published_table_is_not_the_formula():
    # B1 was released as width 1.0 / depth 1.1 / 240 px; the formula at phi=1 says 1.1 / 1.2 / 258.
    assert (PUBLISHED["b1"].width, PUBLISHED["b1"].depth, PUBLISHED["b1"].resolution) == (1.0, 1.1, 240)
    formula = effnet.compound_scale(B0, 1.0)
    assert formula.resolution != PUBLISHED["b1"].resolution
    assert effnet.get_spec("efficientnet_b1").width_mult == 1.0


def test_resolution_divisor_keeps_small_proxies_apart():
    proxy = B0.replace(resolution=64)
    assert effnet.scale(proxy, resolution=1.05).resolution == effnet.scale(proxy, resolution=1.0).resolution == 64
    assert effnet.scale(proxy, resolution=1.05, resolution_divisor=1).resolution == 67
    assert effnet.compound_scale(proxy, 1, resolution_divisor=1).resolution == 74  # 64 * 1.15 = 73.6
