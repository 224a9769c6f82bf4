"""The command-line half of issue 21's probe, grouped by the promise each case checks: numeric flags are finite
and in range when parsed (one line naming the flag, exit 2), flags that would be ignored are refused, and every
value argparse reads as a number is one (`--phi -1e0`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from effnet.cli import build_parser, main


def one_error_line(capsys, *needles: str) -> str:
    """The single stderr line of a refused command, checked for each needle (case-insensitive)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    for needle in needles:
        assert needle.lower() in err[0].lower(), err[0]
    return err[0]


# ---------------------------------------------------------------- promise: numeric flags are finite and in range
NUMERIC_CASES = [
    (["profile", "--resolution", "0"], "--resolution"),
    (["predict", "x.jpg", "--mean", "nan", "0.4", "0.4"], "--mean"),
    (["predict", "x.jpg", "--std", "0", "1", "1"], "--std"),
    (["predict", "x.jpg", "--crop-pct", "inf"], "--crop-pct"),
    (["predict", "x.jpg", "--top-k", "0"], "--top-k"),
    (["predict", "x.jpg", "--input-size", "1000000"], "--input-size"),
    (["predict", "x.jpg", "--norm-eps", "-1"], "--norm-eps"),
    (["cam", "x.jpg", "--alpha", "5"], "--alpha"),
    (["cam", "x.jpg", "--alpha", "nan"], "--alpha"),
    (["cam", "x.jpg", "--class-index", "-3"], "--class-index"),
    (["export", "--rtol", "-1"], "--rtol"),
    (["export", "--rtol", "nan"], "--rtol"),
    (["export", "--atol", "inf"], "--atol"),
    (["export", "--resolution", "100000000"], "--resolution"),
    (["export", "--min-agreement", "1.5"], "--min-agreement"),
    (["export", "--calibration-size", "0"], "--calibration-size"),
    (["bench", "--threads", "99999999999"], "--threads"),
    (["bench", "--runs", "0"], "--runs"),
    (["bench", "--warmup", "-1"], "--warmup"),
    (["scale", "--phi", "nan"], "--phi"),
    (["scale", "--alpha", "0"], "--alpha"),
    (["scale", "--width", "-2"], "--width"),
    (["train", "--threads", "99999999999"], "--threads"),
    (["train", "--randaugment-magnitude", "1000000"], "--randaugment-magnitude"),
    (["train", "--randaugment-ops", "100000"], "--randaugment-ops"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--image-size", "100000"], "--image-size"),
    (["train", "--val-fraction", "2"], "--val-fraction"),
    (["eval", "x.pt", "--batch-size", "0"], "--batch-size"),
    (["study", "--targets", "1e300"], "--targets"),
    (["study", "--targets", "2", "nan"], "--targets"),
    (["search", "--step", "1e-9"], "--step"),
    (["search", "--alpha", "1", "inf"], "--alpha"),
    (["search", "--workers", "0"], "--workers"),
    (["search", "--threads", "1000000"], "--threads"),
    (["search", "--seeds", "0", "-1"], "--seeds"),
]


@pytest.mark.parametrize(("argv", "flag"), NUMERIC_CASES, ids=[" ".join(c[0]) for c in NUMERIC_CASES])
def test_numeric_flags_out_of_range_are_one_line_naming_the_flag(tmp_path, monkeypatch, capsys, argv, flag):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    one_error_line(capsys, f"effnet {argv[0]}: error: argument {flag}")
    assert not list(tmp_path.iterdir())  # refused before anything was written


def _numeric_actions(parser: argparse.ArgumentParser, prefix: str = "effnet"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _numeric_actions(sub, f"{prefix} {name}")
        elif action.type in (int, float):
            yield f"{prefix} {action.option_strings or action.dest}"


def test_no_numeric_flag_of_any_command_takes_a_bare_int_or_float():
    # By construction: every number goes through a range-checking converter (effnet._util.validation), so a flag added
    # later without one fails here instead of accepting NaN, 0 or 1e9.
    assert list(_numeric_actions(build_parser())) == []


def test_a_grid_too_fine_to_enumerate_is_refused_at_once(capsys, tmp_path):
    assert main(["search", "--alpha", "1", "100", "--step", "0.001", "--out", str(tmp_path / "s")]) == 2
    one_error_line(capsys, "--step", "narrower ranges")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("phi", ["-1e0", "-1.", "-.5", "-1E0"])
def test_negative_numbers_in_any_spelling_are_values_not_options(tmp_path, capsys, phi):
    out = tmp_path / "s.json"
    assert main(["scale", "--phi", phi, "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["resolution"] < 224  # smaller than B0: phi was read as negative


def test_parse_errors_are_one_line_and_help_still_exits_0(capsys):
    assert main(["scale", "--bogus"]) == 2
    one_error_line(capsys, "unrecognized arguments: --bogus", "effnet --help")
    assert main(["profile", "--help"]) == 0


# --------------------------------------------------------------- promise: a flag that would be ignored is refused
@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    from effnet import create_model
    from effnet.weights import save_weights
    from test_faults_runs import tiny_spec

    return save_weights(create_model(tiny_spec(), num_classes=3), tmp_path_factory.mktemp("w") / "tiny.safetensors")


def _ignored_cases(weights: Path, tmp: Path) -> list[tuple[list[str], str]]:
    from PIL import Image

    (tmp / "photos").mkdir(exist_ok=True)
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp / "photos" / "red.png")
    (tmp / "run").mkdir(exist_ok=True)
    (tmp / "run" / "config.yaml").write_text("epochs: 1\n")
    (tmp / "c.yaml").write_text("epochs: 1\n")
    w, photos = str(weights), str(tmp / "photos")
    return [
        (["export", "--weights", w, "--calibration", photos, "--out", str(tmp / "m.onnx")], "add --int8"),
        (["export", "--weights", w, "--holdout", photos, "--out", str(tmp / "m.onnx")], "add --int8"),
        (["bench", w, "--calibration", photos], "add --int8"),
        (["predict", photos, "--weights", w, "--resize-mode", "squash", "--crop-pct", "0.9"], "--resize-mode crop"),
        (["models", "--markdown"], "add --pretrained"),
        (["models", "--pretrained", "--markdown", "--json"], "not allowed with argument"),
        (["train", "--resume", str(tmp / "run"), "--config", str(tmp / "c.yaml")], "drop --config"),
    ]


IGNORED_IDS = [
    "calibration-no-int8",
    "holdout-no-int8",
    "bench-calibration",
    "crop-pct-squash",
    "markdown-alone",
    "markdown-json",
    "config-with-resume",
]


@pytest.mark.parametrize("case", range(len(IGNORED_IDS)), ids=IGNORED_IDS)
def test_flags_that_would_be_silently_ignored_are_refused(tiny_weights, tmp_path, monkeypatch, capsys, case):
    monkeypatch.chdir(tmp_path)
    argv, fix = _ignored_cases(tiny_weights, tmp_path)[case]
    assert main(argv) == 2
    one_error_line(capsys, fix)
    assert not (tmp_path / "m.onnx").exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "c.yaml",
        "photos",
        "run",
    ]


# ------------------------------------------- promise: outputs are staged beside their destination and renamed
def _tiny_spec_file(tmp: Path) -> str:
    from test_faults_runs import tiny_spec

    return str(tiny_spec().save(tmp / "tiny.json"))


@pytest.mark.parametrize(
    ("out", "needle"), [("folder", "is a folder: give a file name"), ("afile/m.onnx", "is a file")]
)
def test_an_output_path_that_cannot_be_a_file_is_named_with_the_fix(tmp_path, capsys, out, needle):
    (tmp_path / "folder").mkdir()
    (tmp_path / "afile").write_text("x")
    argv = ["export", "--model", _tiny_spec_file(tmp_path), "--out", str(tmp_path / out), "--no-check"]
    assert main(argv) == 2
    line = one_error_line(capsys, needle, str(tmp_path / out))
    assert ".tmp" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "folder", "tiny.json"]


def test_export_removes_leftovers_of_killed_exports_and_keeps_live_ones(tmp_path, capsys):
    import os
    import time

    dead, live = 999_999_999, 1  # no such process; init, always alive
    stale = [tmp_path / f".m.onnx.{dead}.k2j3.tmp", tmp_path / ".m.onnx.abc123.tmp"]  # the second: old name, old
    for path in stale:
        path.write_bytes(b"half a file")
    os.utime(stale[1], (time.time() - 7200, time.time() - 7200))
    (tmp_path / f".m.onnx.{dead}.q1.staging").mkdir()
    (tmp_path / f".m.onnx.{dead}.q1.staging" / "fp32.onnx").write_bytes(b"x" * 1000)
    kept = [tmp_path / f".m.onnx.{live}.zz.tmp", tmp_path / ".other.onnx.1.a.tmp"]
    for path in kept:
        path.write_bytes(b"someone else's")
    assert main(["export", "--model", _tiny_spec_file(tmp_path), "--out", str(tmp_path / "m.onnx"), "--no-check"]) == 0
    hidden = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert hidden == sorted(p.name for p in kept)
    assert (tmp_path / "m.onnx").stat().st_size > 1000


_KILL_AT = r"""
import importlib.util, os, signal, sys
spec = importlib.util.spec_from_file_location("fileio", sys.argv[1])
fileio = importlib.util.module_from_spec(spec); spec.loader.exec_module(fileio)
final, kill_at = sys.argv[2], sys.argv[3]
real = os.replace
def replace(src, dst):
    if str(dst).endswith(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
fileio.os.replace = replace
from pathlib import Path
with fileio.staging_dir(final) as folder:
    (folder / "m.xml").write_text("new xml"); (folder / "m.bin").write_bytes(b"new bin")
    fileio.replace_files([folder / "m.xml", folder / "m.bin"], [Path(final), Path(final).with_suffix(".bin")])
"""


@pytest.mark.parametrize("kill_at", ["m.bin", "m.xml", "never"])
def test_a_killed_xml_bin_replacement_never_damages_the_previous_pair(tmp_path, kill_at):
    import subprocess
    import sys

    import effnet._util.fileio as fileio

    final = tmp_path / "m.xml"
    final.write_text("old xml")
    final.with_suffix(".bin").write_bytes(b"old bin" * 1000)
    run = subprocess.run([sys.executable, "-c", _KILL_AT, fileio.__file__, str(final), kill_at], timeout=60)
    assert run.returncode == (-9 if kill_at != "never" else 0)
    if kill_at != "never":
        assert not final.exists()  # readers open the .xml: between the renames there is no mismatched pair
        fileio.remove_stale_staging(final)  # what the next export to m.xml does first
    pair = (final.read_text(), final.with_suffix(".bin").read_bytes())
    assert pair == (("new xml", b"new bin") if kill_at == "never" else ("old xml", b"old bin" * 1000))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml"]


def test_bench_takes_a_spec_file_like_every_other_command(tmp_path, capsys):
    spec = _tiny_spec_file(tmp_path)
    argv = ["bench", spec, "--quick", "--no-twins", "--no-resnets", "--no-anchors", "--json", "--quiet"]
    assert main(argv) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["label"] == f"effnet {spec}" and row["resolution"] == 32 and row["median_ms"] > 0


# --------------------------------------------------- promise: a result that cannot be trusted is not shown as one
def test_an_export_whose_check_fails_writes_nothing_and_keeps_the_previous_file(tmp_path, capsys):
    spec, out = _tiny_spec_file(tmp_path), tmp_path / "m.onnx"
    out.write_bytes(b"previous good export")
    # No float32 export is within 1e-30 of PyTorch: the check fails, so nothing is written.
    assert main(["export", "--model", spec, "--out", str(out), "--json", "--atol", "1e-30"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["passed"] and not report["written"] and out.read_bytes() == b"previous good export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "tiny.json"]  # no staging left
    assert main(["export", "--model", spec, "--out", str(out), "--atol", "1e-30", "--force"]) == 0
    assert "WARNING: --force wrote" in capsys.readouterr().err and out.stat().st_size > 1000


def test_torchscript_export_onto_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux unshare to mount a small tmpfs in a user namespace")
    spec, mount = _tiny_spec_file(tmp_path), tmp_path / "small"
    mount.mkdir()
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1k tmpfs {mount}"], capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {probe.stderr.decode().strip()}")
    export = f"{sys.executable} -m effnet.cli export --model {spec} --format torchscript --out m.pt --no-check"
    script = f"mount -t tmpfs -o size=16k tmpfs {mount} && cd {mount} && {export}; echo rc=$?; ls -A"
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["rc=2"], done.stdout + done.stderr  # before: SIGABRT (rc 134), staging left
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("effnet export:")]
    assert "disk full" in line and "m.pt" in line and "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def nan_weights(tmp_path_factory) -> Path:
    import torch

    from effnet import create_model
    from effnet.weights import save_weights
    from test_faults_runs import tiny_spec

    model = create_model(tiny_spec(), num_classes=3)
    with torch.no_grad():
        next(iter(model.parameters())).view(-1)[0] = float("nan")
    return save_weights(model, tmp_path_factory.mktemp("nan") / "nan.safetensors")


@pytest.mark.parametrize("command", ["predict", "cam", "export"])
def test_non_finite_weights_are_refused_instead_of_printing_nan_results(nan_weights, tmp_path, capsys, command):
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "red.png")
    argv = {
        "predict": ["predict", str(tmp_path / "red.png")],
        "cam": ["cam", str(tmp_path / "red.png"), "--out", str(tmp_path / "cam")],
        "export": ["export", "--out", str(tmp_path / "m.onnx")],
    }[command]
    assert main([*argv, "--weights", str(nan_weights)]) == 2
    one_error_line(capsys, "non-finite weights", str(nan_weights))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["red.png"]


def test_quantize_model_stages_beside_its_output_and_leaves_nothing_else(tmp_path):
    import numpy as np

    from effnet import create_model
    from effnet.deploy.quantize import QuantizeConfig, quantize_model
    from test_faults_runs import tiny_spec

    images = np.random.default_rng(0).random((8, 3, 32, 32), dtype=np.float32)
    out = tmp_path / "m.int8.onnx"
    written = quantize_model(
        create_model(tiny_spec(), num_classes=3), images, out, QuantizeConfig(backend="onnxruntime")
    )
    assert written == out and out.stat().st_size > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["m.int8.onnx"]


@pytest.mark.parametrize(("command", "out", "needle"), [("search", "afile", "--out"), ("study", "afile/sub", "--out")])
def test_a_results_folder_that_is_a_file_is_named_with_the_fix(tmp_path, capsys, command, out, needle):
    (tmp_path / "afile").write_text("x")
    budget = ["--num-train", "32", "--num-val", "16", "--epochs", "1", "--base-resolution", "32"]
    assert main([command, *budget, "--out", str(tmp_path / out)]) == 2
    one_error_line(capsys, needle, str(tmp_path / out), "give a folder")
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]


# ----------------------------------------------- promise: a file a runtime refuses is one line, not its traceback
def _external_data_onnx(good: Path, folder: Path, location: str) -> Path:
    """`good` with its weights in an external-data file at `location` (relative to `folder`), which may not exist."""
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    folder.mkdir()
    model = onnx.load(str(good))
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="w.data", size_threshold=0)
    onnx.save(model, str(folder / "m.onnx"))  # writes w.data beside it
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(model, str(folder / "bad.onnx"), save_as_external_data=False)
    return folder / "bad.onnx"


@pytest.mark.parametrize("kind", ["external-outside", "external-missing"])
def test_onnx_external_data_outside_its_folder_or_missing_is_one_line(tiny_weights, tmp_path, capsys, kind):
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "red.png")
    good = tmp_path / "good.onnx"
    assert main(["export", "--weights", str(tiny_weights), "--out", str(good), "--no-check"]) == 0
    bad = _external_data_onnx(good, tmp_path / "ext", "../good.onnx" if kind == "external-outside" else "none.data")
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "red.png"), "--weights", str(bad)]) == 2
    one_error_line(capsys, f"{bad} cannot be read by", "escapes model directory" if "outside" in kind else "not exist")


@pytest.mark.parametrize("kind", ["truncated.onnx", "garbage.onnx", "garbage.xml"])
def test_exported_files_the_runtime_refuses_are_one_line(tiny_weights, tmp_path, capsys, kind):
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "red.png")
    good = tmp_path / "good.onnx"
    assert main(["export", "--weights", str(tiny_weights), "--out", str(good), "--no-check"]) == 0
    bad = tmp_path / kind
    bad.write_bytes({"truncated.onnx": good.read_bytes()[:3000], "garbage.onnx": b"\x00garbage" * 20}.get(kind, b"<x"))
    bad.with_suffix(".bin").write_bytes(b"\x00" * 16)
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "red.png"), "--weights", str(bad)]) == 2
    one_error_line(capsys, f"{bad} cannot be read by", "export it again")


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("preprocess", "INPUT_SIZE_BIG", "input_size must be a whole number"),
        ("preprocess", "[1, 2]", "must be a mapping"),
        ("preprocess", '{"colour": 1}', "unknown preprocessing fields"),
        ("class_names", '{"a": 1}', "must be a list of class names"),
    ],
)
def test_tampered_onnx_metadata_is_one_line_naming_the_file(tiny_weights, tmp_path, capsys, key, value, needle):
    import onnx
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "red.png")
    good = tmp_path / "good.onnx"
    assert main(["export", "--weights", str(tiny_weights), "--out", str(good), "--no-check"]) == 0
    model = onnx.load(str(good))
    props = {prop.key: prop for prop in model.metadata_props}
    if key not in props:
        props[key] = model.metadata_props.add(key=key)
    if value == "INPUT_SIZE_BIG":  # every field present, one of the wrong type
        value = json.dumps(json.loads(props[key].value) | {"input_size": "big"})
    props[key].value = value
    onnx.save(model, str(tmp_path / "bad.onnx"))
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "red.png"), "--weights", str(tmp_path / "bad.onnx")]) == 2
    one_error_line(capsys, f"{tmp_path / 'bad.onnx'}: metadata '{key}'", needle, "export it again")
