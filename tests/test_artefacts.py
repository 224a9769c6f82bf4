"""Every artefact effnet writes, every effnet command reads: predict, eval and cam on a .safetensors file, a
training checkpoint, an ONNX export and an int8 OpenVINO IR, all made here from a tiny model trained on
procedural two-colour images; `bench --json` on the exported files."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from effnet.cli import main
from effnet.deploy.runtimes import ExportedModel, open_exported, runtime_available
from effnet.models.specs import NetSpec, StageSpec
from effnet.weights import load_model, save_weights

KINDS = ("safetensors", "checkpoint", "onnx", "int8")
VAL_IMAGES = 12


def _images(root: Path) -> None:
    """Reddish and bluish noise pictures: a train/ and a val/ folder of two classes."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 16), ("val", VAL_IMAGES // 2)):
        for name, channel in (("blue", 2), ("red", 0)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 90, (40, 40, 3), dtype=np.uint8)
                pixels[..., channel] += 150
                Image.fromarray(pixels).save(folder / f"{i}.png")


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    """{kind: path} of the four artefacts of one trained model, and the data folder."""
    if not (runtime_available("onnxruntime") and runtime_available("openvino")):
        pytest.skip("needs onnxruntime and openvino")
    tmp = tmp_path_factory.mktemp("artefacts")
    _images(tmp / "data")
    stages = (StageSpec("mbconv", 1, 3, 1, 8, 1, 0.25), StageSpec("mbconv", 4, 3, 2, 16, 1, 0.25))
    spec = NetSpec("tiny", stages, stem_channels=8, head_channels=32, resolution=32, dropout=0.0).save(tmp / "t.json")
    train = ["train", "--model", str(spec), "--data", "folder", "--data-root", str(tmp / "data"), "--epochs", "2",
             "--batch-size", "8", "--image-size", "32", "--no-tensorboard", "--no-plot", "--threads", "1",
             "--output-dir", str(tmp / "runs"), "--run-name", "art", "--quiet"]  # fmt: skip
    assert main(train) == 0
    paths = {"checkpoint": tmp / "runs" / "art" / "checkpoints" / "last.pt"}
    paths["safetensors"] = save_weights(load_model(paths["checkpoint"]), tmp / "art.safetensors")
    paths["onnx"] = tmp / "art.onnx"
    assert main(["export", "--weights", str(paths["checkpoint"]), "--out", str(paths["onnx"]), "--json"]) == 0
    asked = tmp / "art.int8.onnx"
    argv = ["export", "--weights", str(paths["safetensors"]), "--int8", "--int8-backend", "openvino", "--calibration",
            str(tmp / "data" / "train"), "--holdout", str(tmp / "data" / "val"), "--calibration-size", "16",
            "--out", str(asked), "--force", "--json"]  # fmt: skip
    assert main(argv) == 0
    paths["int8"] = tmp / "art.int8.xml"
    assert not asked.exists() and paths["int8"].is_file() and paths["int8"].with_suffix(".bin").is_file()
    return paths, tmp / "data"


def _predict(path: Path, image: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["predict", str(image), "--weights", str(path), "--json", "--top-k", "2"]) == 0
    return json.loads(capsys.readouterr().out)


def test_predict_reads_every_artefact_with_its_class_names_and_preprocessing(artefacts, capsys):
    paths, data = artefacts
    image = data / "val" / "red" / "0.png"
    reference = {row["name"]: row["probability"] for row in _predict(paths["safetensors"], image, capsys)["top"]}
    assert set(reference) == {"blue", "red"}  # the names the training folder gave, recorded in each file
    for kind in KINDS[1:]:
        got = {row["name"]: row["probability"] for row in _predict(paths[kind], image, capsys)["top"]}
        tolerance = 0.05 if kind == "int8" else 1e-4
        assert got.keys() == reference.keys(), kind
        assert all(abs(got[name] - reference[name]) < tolerance for name in got), (kind, got, reference)


def test_eval_reads_every_artefact(artefacts, capsys):
    paths, data = artefacts
    results = {}
    for kind in KINDS:
        capsys.readouterr()
        assert main(["eval", str(paths[kind]), "--data", "folder", "--data-root", str(data), "--json"]) == 0, kind
        results[kind] = json.loads(capsys.readouterr().out)
    assert all(r["count"] == VAL_IMAGES and r["image_size"] == 32 for r in results.values())
    for kind in ("checkpoint", "onnx"):
        assert results[kind]["top1"] == results["safetensors"]["top1"]
        assert results[kind]["loss"] == pytest.approx(results["safetensors"]["loss"], abs=1e-4)
    assert results["int8"]["loss"] == pytest.approx(results["safetensors"]["loss"], abs=0.05)


def test_cam_takes_torch_weights_and_says_why_not_for_exported_graphs(artefacts, tmp_path, capsys):
    paths, data = artefacts
    image = str(data / "val" / "blue" / "0.png")
    for kind in ("safetensors", "checkpoint"):
        assert main(["cam", image, "--weights", str(paths[kind]), "--out", str(tmp_path / kind), "--json"]) == 0
        assert (tmp_path / kind / "grid.png").is_file()
    for kind in ("onnx", "int8"):
        capsys.readouterr()
        assert main(["cam", image, "--weights", str(paths[kind]), "--out", str(tmp_path / kind)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "CAM needs the PyTorch model" in err and str(paths[kind]) in err


def test_open_exported_carries_the_metadata_and_refuses_a_wrong_size(artefacts):
    import torch

    paths, _ = artefacts
    for kind in ("onnx", "int8"):
        model = open_exported(paths[kind])
        assert isinstance(model, ExportedModel) and model.num_classes == 2
        assert model.class_names == ("blue", "red") and model.preprocess.input_size == 32
    assert open_exported(paths["onnx"])(torch.zeros(1, 3, 48, 48)).shape == (1, 2)  # the ONNX export: any size
    with pytest.raises(ValueError, match="exported for 32x32"):
        open_exported(paths["int8"])(torch.zeros(1, 3, 48, 48))  # the int8 IR is fixed at its calibration size


def test_int8_out_names(artefacts, tmp_path, capsys):
    paths, data = artefacts
    argv = ["export", "--weights", str(paths["safetensors"]), "--int8", "--calibration", str(data / "train")]
    assert main([*argv, "--int8-backend", "onnxruntime", "--out", str(tmp_path / "x.xml")]) == 2
    assert "writes ONNX, not OpenVINO IR" in capsys.readouterr().err
    assert not (tmp_path / "x.xml").exists()
    assert main(["export", "--weights", str(paths["onnx"])]) == 2
    assert "already an exported graph" in capsys.readouterr().err


def test_bench_json_times_exported_files_and_is_valid_json(artefacts, capsys):
    paths, _ = artefacts
    argv = ["bench", str(paths["onnx"]), str(paths["int8"]), "--quick", "--no-resnets", "--json", "--quiet"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)  # the CPU's flags (a frozenset) once made this a TypeError
    assert [(r["label"], r["backend"], r["resolution"]) for r in rows] == [
        (str(paths["onnx"]), "onnxruntime", 32),
        (str(paths["int8"]), "openvino", 32),
    ]
    assert all(r["median_ms"] > 0 for r in rows)
    flags = rows[0]["cpu"]["flags"]
    assert flags is None or (isinstance(flags, list) and flags == sorted(flags))
