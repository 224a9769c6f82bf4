"""Specs: the base tables, validation, summaries and spec files; exact parameter counts of the registry."""

import dataclasses

import pytest
import torch

import effnet
from effnet.models.specs import B0, B0_STAGES, NetSpec, StageSpec

# ../shared/REFERENCE.md, 1000 classes, to the unit.
REFERENCE_PARAMS = {
    "efficientnet_b0": 5_288_548,
    "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616,
    "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704,
    "efficientnet_b7": 66_347_960,
    "efficientnet_b8": 87_413_142,
    "efficientnet_l2": 480_309_308,
    "efficientnetv2_b0": 7_139_704,
    "efficientnetv2_b1": 8_141_052,
    "efficientnetv2_b2": 10_096_086,
    "efficientnetv2_b3": 14_358_406,
    "efficientnetv2_s": 21_458_488,
    "efficientnetv2_m": 54_139_356,
    "efficientnetv2_l": 118_515_272,
    "efficientnetv2_xl": 208_119_808,
    "efficientnet_lite0": 4_652_008,
    "efficientnet_lite1": 5_416_680,
    "efficientnet_lite2": 6_092_072,
    "efficientnet_lite3": 8_197_096,
    "efficientnet_lite4": 13_006_568,
    "mobilenetv2": 3_504_872,  # torchvision mobilenet_v2
    "resnet50": 25_557_032,  # torchvision resnet50
}


def test_registry_covers_reference():
    assert set(effnet.list_models()) == set(REFERENCE_PARAMS)


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_param_count_exact(name):
    with torch.device("meta"):  # no memory, no init: L2 is counted in milliseconds
        model = effnet.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == REFERENCE_PARAMS[name]


def test_b0_is_paper_table_1():
    rows = [(s.expand_ratio, s.kernel_size, s.stride, s.out_channels, s.num_layers) for s in B0_STAGES]
    assert rows == [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                    (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
    assert (B0.stem_channels, B0.head_channels, B0.activation) == (32, 1280, "silu")
    assert all(s.se_ratio == 0.25 for s in B0_STAGES)


def test_published_variants_settings():
    b4 = effnet.get_spec("efficientnet_b4")
    assert (b4.resolution, b4.dropout, b4.width_mult, b4.depth_mult) == (380, 0.4, 1.4, 1.8)
    v2s = effnet.get_spec("efficientnetv2_s")
    assert (v2s.train_resolution, v2s.resolution) == (300, 384)
    lite4 = effnet.get_spec("efficientnet_lite4")
    assert lite4.stem_channels == 32 and lite4.head_channels == 1280  # Lite never scales stem/head
    assert lite4.stages[0].num_layers == 1 and lite4.stages[-1].num_layers == 1
    assert all(s.se_ratio == 0 for s in lite4.stages) and lite4.activation == "relu6"


def test_spec_is_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        B0.stem_channels = 16  # type: ignore[misc]
    with pytest.raises(ValueError, match="kernel_size"):
        StageSpec("mbconv", 6, 4, 1, 16, 1)
    with pytest.raises(ValueError, match="block"):
        StageSpec("conv", 6, 3, 1, 16, 1)
    with pytest.raises(ValueError, match="dropout"):
        B0.replace(dropout=1.5)


def test_summary_is_compact_and_complete():
    text = B0.summary()
    assert "stem 32" in text and "head 1280" in text
    assert "stage 2: mbconv6 k5 s2 c40 x2 se0.25" in text
    assert len(text.splitlines()) == 2 + len(B0.stages)


def test_spec_file_round_trip(tmp_path):
    spec = effnet.compound_scale(B0, 1.5)
    path = spec.save(tmp_path / "scaled.json")
    assert NetSpec.load(path) == spec
    model = effnet.create_model(str(path), num_classes=3)
    assert model.spec == spec and model.num_classes == 3


def test_spec_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a spec"}')
    with pytest.raises(ValueError, match="not an effnet spec"):
        NetSpec.load(bad)
    with pytest.raises(ValueError, match="unknown NetSpec fields"):
        NetSpec.from_dict(B0.to_dict() | {"colour": "red"})


@pytest.mark.parametrize("name", effnet.list_models())
def test_v2_family_is_a_spec_property(name):
    # The V2 family (its fused stages) decides preprocessing, known BN eps of weight files and bias decay.
    assert effnet.get_spec(name).is_v2 == name.startswith("efficientnetv2_")
