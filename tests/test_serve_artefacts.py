"""`effnet serve` on what effnet exports: an ONNX graph, an int8 ONNX (onnxruntime QDQ) and an int8 OpenVINO IR,
each served with the preprocessing and class names its export recorded; folders given as --weights."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from effnet.cli import main
from effnet.deploy.runtimes import runtime_available
from effnet.models.specs import NetSpec, StageSpec
from effnet.serve.config import ModelSource

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")


def _picture(channel: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 90, (40, 40, 3), dtype=np.uint8)
    pixels[..., channel] += 150
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{kind: path} of a tiny two-class model ("blue", "red") trained for a moment, and its exports."""
    if not (runtime_available("onnxruntime") and runtime_available("openvino")):
        pytest.skip("needs onnxruntime and openvino")
    tmp = tmp_path_factory.mktemp("served")
    for split, count in (("train", 16), ("val", 6)):
        for name, channel in (("blue", 2), ("red", 0)):
            (tmp / "data" / split / name).mkdir(parents=True)
            for i in range(count):
                _picture(channel, 1000 * channel + i + (500 if split == "val" else 0)).save(
                    tmp / "data" / split / name / f"{i}.png"
                )
    stages = (StageSpec("mbconv", 1, 3, 1, 8, 1, 0.25), StageSpec("mbconv", 4, 3, 2, 16, 1, 0.25))
    spec = NetSpec("tiny", stages, stem_channels=8, head_channels=32, resolution=32, dropout=0.0).save(tmp / "t.json")
    train = ["train", "--model", str(spec), "--data", "folder", "--data-root", str(tmp / "data"), "--epochs", "2",
             "--batch-size", "8", "--image-size", "32", "--no-tensorboard", "--no-plot", "--threads", "1",
             "--output-dir", str(tmp / "runs"), "--run-name", "s", "--quiet"]  # fmt: skip
    assert main(train) == 0
    paths = {"checkpoint": tmp / "runs" / "s" / "checkpoints" / "last.pt", "onnx": tmp / "tiny.onnx"}
    assert main(["export", "--weights", str(paths["checkpoint"]), "--out", str(paths["onnx"]), "--json"]) == 0
    int8 = ["export", "--weights", str(paths["checkpoint"]), "--int8", "--calibration", str(tmp / "data" / "train"),
            "--holdout", str(tmp / "data" / "val"), "--calibration-size", "16", "--force", "--json"]  # fmt: skip
    for backend, name in (("openvino", "tiny.int8.xml"), ("onnxruntime", "tiny.int8.onnx")):
        paths[f"int8 {backend}"] = tmp / name
        assert main([*int8, "--int8-backend", backend, "--out", str(tmp / name)]) == 0
        assert paths[f"int8 {backend}"].is_file()
    return paths


@pytest.mark.parametrize(
    ("kind", "runtime"), [("onnx", "onnxruntime"), ("int8 openvino", "openvino"), ("int8 onnxruntime", "onnxruntime")]
)
def test_exports_are_served_with_their_recorded_preprocessing_and_classes(exported, kind, runtime):
    from effnet.serve.classifier import load_classifier
    from effnet.weights import load_model

    reference = load_model(exported["checkpoint"]).eval()
    classifier = load_classifier(ModelSource(weights=str(exported[kind])))
    expected_names = (reference.spec.name, runtime, ("blue", "red"))
    assert (classifier.name, classifier.runtime, classifier.class_names) == expected_names
    assert classifier.preprocess == reference.preprocess  # read from the file, no --model or --input-size given
    images = [_picture(channel, 7000 + seed) for channel in (0, 2) for seed in range(4)]
    batch = torch.stack([classifier.prepare(image) for image in images])
    with torch.inference_mode():
        expected = reference(batch)
    logits = classifier.logits(batch)
    tolerance = 0.1 if "int8" in kind else 1e-4  # int8 rounds; the float graph computes what PyTorch does
    torch.testing.assert_close(logits, expected, atol=tolerance * max(1.0, float(expected.abs().max())), rtol=0)


@pytest.mark.slow
def test_an_int8_openvino_ir_behind_a_real_server(exported):
    from serve_util import running_server

    red = io.BytesIO()
    _picture(0, 9001).save(red, format="PNG")
    with running_server("--weights", str(exported["int8 openvino"])) as url:
        name = httpx.get(f"{url}/health").json()["model"]
        assert name.startswith("tiny")  # the architecture the export recorded
        metadata = httpx.get(f"{url}/v2/models/{name}").json()
        assert metadata["platform"] == "openvino_ir" and metadata["inputs"][1]["shape"] == [-1, 3, 32, 32]
        assert [output["shape"] for output in metadata["outputs"]] == [[-1, 2], [-1, 2]]
        files = {"file": ("red.png", red.getvalue(), "image/png")}
        answer = httpx.post(f"{url}/predict", files=files, params={"top_k": 2}, timeout=60)
        assert answer.status_code == 200, answer.text
        top = answer.json()["predictions"][0]["top"]
        assert {entry["name"] for entry in top} == {"blue", "red"}
        health = httpx.get(f"{url}/health").json()
        assert (health["runtime"], health["cam"], health["input_size"]) == ("openvino", False, 32)
        assert httpx.get(f"{url}/model").json()["source"] == "tiny.int8.xml"  # the file, not the server's folders


def test_runtime_flags_that_cannot_run_an_export_are_refused(exported):
    from effnet.serve.classifier import resolve_runtime

    with pytest.raises(ValueError, match="OpenVINO IR: it runs on openvino"):
        resolve_runtime("onnxruntime", ModelSource(weights=str(exported["int8 openvino"])))
    assert resolve_runtime("auto", ModelSource(weights=str(exported["int8 openvino"]))) == "openvino"


def test_folders_as_weights(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.pt").write_bytes(b"")
    assert main(["serve", "--weights", str(tmp_path / "run"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "is a folder, not a weight file (it holds best.pt)" in err and err.count("\n") == 1
    assert "does not exist" not in err
    (tmp_path / "graph.onnx").mkdir()
    assert main(["serve", "--weights", str(tmp_path / "graph.onnx"), "--port", "0"]) == 2
    assert "is a folder, not an exported graph" in capsys.readouterr().err


def test_a_save_pretrained_folder_is_served(tmp_path):
    pytest.importorskip("huggingface_hub")
    import effnet
    from effnet.serve.classifier import load_classifier
    from effnet.weights.hf import save_pretrained

    stages = (StageSpec("mbconv", 1, 3, 1, 8, 1, 0.25),)
    spec = NetSpec("wee", stages, stem_channels=8, head_channels=16, resolution=32, dropout=0.0)
    model = effnet.create_model(spec.save(tmp_path / "wee.json"), num_classes=3).eval()
    folder = save_pretrained(model, tmp_path / "wee")
    classifier = load_classifier(ModelSource(weights=str(folder)), runtime="pytorch")
    assert (classifier.name, classifier.num_classes) == ("wee", 3)
    batch = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(classifier.logits(batch), model(batch), atol=1e-4, rtol=1e-4)


def test_missing_bin_is_one_line(exported, tmp_path, capsys):
    lonely = tmp_path / "x.xml"
    lonely.write_bytes(Path(exported["int8 openvino"]).read_bytes())
    assert main(["serve", "--weights", str(lonely), "--port", "0"]) == 2
    assert "x.bin is missing" in capsys.readouterr().err
