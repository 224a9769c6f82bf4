"""Progressive learning schedules: the paper's Table 6 and google/automl's released code, stage by stage."""

from __future__ import annotations

import pytest

import effnet
from effnet.train import TrainConfig
from effnet.train.progressive import RELEASED, TABLE6, default_range, progressive_stages
from effnet.train.setup import _stages


def settings(stages):
    return [(s.image_size, s.magnitude, round(s.mixup_alpha, 4), round(s.cutmix_alpha, 4), round(s.dropout, 4))
            for s in stages]


def test_released_schedule_matches_automl_code():
    # automl main.py: size int(128 + (300 - 128) * (i + 1) / 4), ram linspace(5, 10), mixup/cutmix linspace(0, a),
    # dropout the model's own (effnetv2_configs: S 0.2, M 0.3, L 0.4), never ramped.
    small = progressive_stages(default_range(effnet.get_spec("efficientnetv2_s"), 300, "released"), epochs=8)
    assert settings(small) == [(171, 5, 0, 0, 0.2), (214, 7, 0, 0, 0.2), (257, 8, 0, 0, 0.2), (300, 10, 0, 0, 0.2)]
    large = progressive_stages(RELEASED["l"], epochs=8)
    assert [s.image_size for s in large] == [192, 256, 320, 384]
    assert [s.magnitude for s in large] == [5, 10, 15, 20]
    assert [s.mixup_alpha for s in large] == pytest.approx([0, 0.5 / 3, 1 / 3, 0.5])
    assert [s.cutmix_alpha for s in large] == pytest.approx([0, 0.5 / 3, 1 / 3, 0.5])
    medium = default_range(effnet.get_spec("efficientnetv2_m"), 384, "released")
    assert medium.dropout == (effnet.get_spec("efficientnetv2_m").dropout,) * 2
    assert "cutmix alpha 0.2" in progressive_stages(medium, epochs=4)[-1].describe()


def test_paper_schedule_is_table6_and_stays_the_default():
    small = progressive_stages(default_range(effnet.get_spec("efficientnetv2_s"), 300), epochs=8)
    assert settings(small) == [(128, 5, 0, 0, 0.1), (185, 8, 0, 0, 0.1667), (243, 12, 0, 0, 0.2333),
                               (300, 15, 0, 0, 0.3)]
    assert default_range(effnet.get_spec("efficientnetv2_l"), 380, "paper") == TABLE6["l"]
    assert TrainConfig().progressive_schedule == "paper"
    with pytest.raises(ValueError, match="progressive_schedule must be one of"):
        TrainConfig(progressive_schedule="v2")
    with pytest.raises(ValueError, match="unknown progressive schedule"):
        default_range(effnet.get_spec("efficientnet_b0"), 224, "table7")


def test_training_stages_follow_the_chosen_schedule():
    spec = effnet.get_spec("efficientnetv2_s")
    released = _stages(TrainConfig(progressive=True, progressive_schedule="released", epochs=4), spec, 96)
    # A 96 px run keeps the released ratio 128/300 for its base (41 px) and the model's own dropout.
    assert [s.image_size for s in released] == [54, 68, 82, 96]
    assert {s.dropout for s in released} == {spec.dropout}
    overridden = _stages(TrainConfig(progressive=True, progressive_schedule="released", epochs=4,
                                     progressive_cutmix=(0.0, 1.0), dropout=0.5), spec, 96)
    assert [s.cutmix_alpha for s in overridden] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert {s.dropout for s in overridden} == {0.5}
    fixed = _stages(TrainConfig(epochs=4, cutmix_alpha=1.0, mixup_alpha=0.2, randaugment_magnitude=10), spec, 96)
    assert settings(fixed) == [(96, 10, 0.2, 1.0, spec.dropout)]
