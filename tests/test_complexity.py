"""Complexity: multiply-adds against the paper's Table 2 and the CLI that prints them."""

import json

import pytest

import effnet
from effnet.cli import main
from effnet.models.complexity import PAPER_FIGURES, profile


@pytest.mark.parametrize("name", [f"efficientnet_b{i}" for i in range(8)])
def test_macs_within_five_percent_of_paper(name):
    result = profile(effnet.get_spec(name))
    assert result.macs == pytest.approx(PAPER_FIGURES[name][1], rel=0.05)


def test_parts_add_up_and_scale_with_resolution():
    # 128 and 256 keep every feature map an exact multiple of the stride, so the cost scales exactly ~4x.
    small, big = profile(effnet.get_spec("efficientnet_b0"), 128), profile(effnet.get_spec("efficientnet_b0"), 256)
    assert [p.name for p in small.parts][:2] == ["stem", "stage 0"] and small.parts[-1].name == "classifier"
    assert small.params == big.params == 5_288_548
    assert big.macs / small.macs == pytest.approx(4, rel=0.05)
    with pytest.raises(ValueError, match="at least 32"):
        profile(effnet.get_spec("efficientnet_b0"), 16)


def test_profile_command_prints_paper_deviation(capsys):
    assert main(["profile", "efficientnet_b0", "efficientnet_lite0"]) == 0
    out = capsys.readouterr().out
    assert "5,288,548" in out and "0.386" in out and "-1.1%" in out


def test_profile_command_json(capsys):
    assert main(["profile", "efficientnet_b1", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["params"] == 7_794_184 and abs(row["macs_dev"]) < 0.05 and len(row["parts"]) == 10


def test_scale_command_writes_a_buildable_spec(tmp_path, capsys):
    out = tmp_path / "b0_phi2.5.json"
    assert main(["scale", "--base", "b0", "--phi", "2.5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "multiply-adds" in printed and str(out) in printed
    model = effnet.create_model(str(out))
    assert model.spec.resolution == 320 and model.spec.width_mult == pytest.approx(1.1**2.5)


def test_scale_command_rejects_bad_coefficients(capsys):
    assert main(["scale", "--phi", "1", "--beta", "0.8"]) == 2
    assert "beta=0.8 < 1" in capsys.readouterr().err
    assert main(["profile", "efficientnet_b9"]) == 2
    assert "Did you mean" in capsys.readouterr().err


def test_profile_keeps_the_name_of_each_spec():
    b0 = effnet.get_spec("efficientnet_b0")
    renamed = profile(b0.replace(name="my_b0"))
    assert renamed.name == "my_b0" and renamed.macs == profile(b0).macs
