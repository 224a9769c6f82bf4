"""The file half of issue 21's probe: every value effnet reads from a file (weight and ONNX metadata, specs,
configs, class lists, datasets) is checked before anything is allocated or created. Each case builds a hostile file
in tmp_path and runs the real command: exit 2, one line of stderr naming the file and the field, no traceback,
nothing created. Grouped by the promise each case checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from effnet.cli import main


def refused(capsys, argv: list[str], folder: Path, *needles: str) -> str:
    """Run `effnet argv`: exit 2, one stderr line holding every needle, nothing new in `folder`."""
    before = sorted(path.relative_to(folder) for path in folder.rglob("*"))
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    for needle in needles:
        assert needle.lower() in err[0].lower(), err[0]
    assert sorted(path.relative_to(folder) for path in folder.rglob("*")) == before  # nothing created
    return err[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A 3-class tiny model's weights, with its spec, class names and preprocessing as metadata."""
    from effnet import create_model
    from effnet.weights import save_weights
    from test_faults_runs import tiny_spec

    model = create_model(tiny_spec(), num_classes=3)
    model.class_names = ("cat", "dog", "fox")
    return save_weights(model, tmp_path_factory.mktemp("w") / "tiny.safetensors")


@pytest.fixture
def photo(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "red.png"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(path)
    return path


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata())


def _spec_with(tiny: Path, change: Callable[[dict], None]) -> str:
    spec = json.loads(_metadata(tiny)["spec"])
    change(spec)
    return json.dumps(spec)


def _stage0(key: str, value: object) -> Callable[[dict], None]:
    return lambda spec: spec["stages"][0].__setitem__(key, value)


# ------------------------------------------- promise: weight-file metadata is checked before anything is built
# (metadata key, a function of the good file giving the hostile value, what the error line says)
WEIGHT_METADATA = {
    "preprocess-missing-field": ("preprocess", lambda t: json.dumps({"input_size": 224}), "without ['crop_pct']"),
    "preprocess-list": ("preprocess", lambda t: "[1, 2]", "must be a mapping"),
    "preprocess-std-zero": (
        "preprocess",
        lambda t: json.dumps({"input_size": 32, "crop_pct": 1.0, "std": [0, 1, 1]}),
        "std must be in (0, 100]",
    ),
    "preprocess-huge-size": ("preprocess", lambda t: json.dumps({"input_size": 10**9, "crop_pct": 1}), "input_size"),
    "preprocess-nan-mean": ("preprocess", lambda t: '{"input_size": 32, "crop_pct": 1, "mean": [NaN, 0, 0]}', "mean"),
    "spec-not-json": ("spec", lambda t: "{not json", "'spec' is not valid JSON"),
    "spec-deep-nesting": ("spec", lambda t: "[" * 100_000 + "]" * 100_000, "nested deeper than 32"),
    "spec-head-5e7": ("spec", lambda t: _spec_with(t, lambda s: s.update(head_channels=50_000_000)), "head_channels"),
    "spec-head-beyond-tensors": (
        "spec",
        lambda t: _spec_with(t, lambda s: s.update(head_channels=60_000)),
        "head_channels 60000, but the widest tensor in the file has",
    ),
    "spec-expand-beyond-tensors": (
        "spec",
        lambda t: _spec_with(t, _stage0("expand_ratio", 60)),
        "expanded channels",
    ),
    "spec-out-channels-1e9": ("spec", lambda t: _spec_with(t, _stage0("out_channels", 10**9)), "out_channels"),
    "spec-1M-layers": ("spec", lambda t: _spec_with(t, _stage0("num_layers", 10**6)), "at most 4096 blocks"),
    "spec-more-blocks-than-tensors": (
        "spec",
        lambda t: _spec_with(t, _stage0("num_layers", 400)),
        "more than the",
    ),
    "spec-100k-stages": (
        "spec",
        lambda t: _spec_with(t, lambda s: s.update(stages=s["stages"] * 30)),
        "at most 64 stages",
    ),
    "spec-string-width": ("spec", lambda t: _spec_with(t, lambda s: s.update(stem_channels="8")), "stem_channels"),
    "class-names-too-many": ("class_names", lambda t: json.dumps(["a", "b", "c", "d"]), "4 names for 3 classes"),
    "class-names-dict": ("class_names", lambda t: json.dumps({"0": "a", "1": "b", "2": "c"}), "a list of class"),
    "class-names-newline": ("class_names", lambda t: json.dumps(["a", "b\nfake line", "c"]), "control character"),
    "class-names-not-strings": (
        "class_names",
        lambda t: json.dumps([1, 2, 3]),
        "'class_names'[0] must be a non-empty string",
    ),
}


@pytest.mark.parametrize("case", list(WEIGHT_METADATA))
def test_tampered_weight_metadata_is_one_line_naming_file_and_field(tiny, photo, tmp_path, capsys, case):
    key, value, needle = WEIGHT_METADATA[case]
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(tiny), str(bad), metadata=_metadata(tiny) | {key: value(tiny)})
    refused(capsys, ["predict", str(photo), "--weights", str(bad)], tmp_path, f"{bad}: metadata '{key}'", needle)


def test_int8_tensors_are_refused_not_cast_to_float(tiny, photo, tmp_path, capsys):
    tensors = {
        key: value.to(torch.int8) if value.is_floating_point() else value for key, value in load_file(tiny).items()
    }
    bad = tmp_path / "int8.safetensors"
    save_file(tensors, str(bad), metadata=_metadata(tiny))
    refused(capsys, ["predict", str(photo), "--weights", str(bad)], tmp_path, str(bad), "torch.int8", "float")


def _checkpoint(tiny: Path, **changes: object) -> dict:
    """A minimal effnet train checkpoint of the tiny weights (no checksum: an older-style file)."""
    from effnet.weights import read_file
    from effnet.weights.reader import CHECKPOINT_FORMAT

    file = read_file(tiny)
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": file.tensors,
        "spec": file.spec.to_dict(),
        "num_classes": 3,
        "class_names": list(file.class_names),
        "preprocess": file.preprocess.to_dict(),
    }
    return state | changes


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


CHECKPOINT_CASES = {
    "num-classes-1e9": ({"num_classes": 10**9}, "'num_classes' must be in [0, 10000000]"),
    "num-classes-not-the-rows": ({"num_classes": 7}, "'num_classes' is 7, but its classifier has 3 rows"),
    "class-names-wrong-count": ({"class_names": ["a", "b"]}, "'class_names' lists 2 names for 3 classes"),
    "preprocess-missing-field": ({"preprocess": {"input_size": 32}}, "'preprocess' is invalid"),
    "model-not-tensors": ({"model": {"stem.conv.weight": [1, 2]}}, "'model' must be a mapping"),
    "deep-nesting": ({"extra": _nested(200)}, "nested deeper than 32"),
    "config-not-a-mapping": ({"config": [1, 2]}, "'config' must be a mapping"),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_tampered_checkpoint_values_are_one_line_naming_file_and_field(tiny, photo, tmp_path, capsys, case):
    changes, needle = CHECKPOINT_CASES[case]
    bad = tmp_path / "last.pt"
    torch.save(_checkpoint(tiny, **changes), bad)
    refused(capsys, ["predict", str(photo), "--weights", str(bad)], tmp_path, str(bad), needle)


def test_a_sound_checkpoint_still_loads(tiny, photo, tmp_path, capsys):
    good = tmp_path / "last.pt"
    torch.save(_checkpoint(tiny), good)
    assert main(["predict", str(photo), "--weights", str(good), "--top-k", "1"]) == 0
    assert capsys.readouterr().out.split()[-1] in ("cat", "dog", "fox")


def test_serve_refuses_tampered_metadata_before_it_listens(tiny, tmp_path, capsys, monkeypatch):
    import uvicorn

    def listen(*args: object, **kwargs: object) -> None:
        raise AssertionError("the server started on tampered weights")

    monkeypatch.setattr(uvicorn, "run", listen)
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(tiny), str(bad), metadata=_metadata(tiny) | {"preprocess": json.dumps({"input_size": 3})})
    argv = ["serve", "--weights", str(bad), "--port", "0"]
    refused(capsys, argv, tmp_path, f"{bad}: metadata 'preprocess' is invalid: preprocessing without ['crop_pct']")


# ---------------------------------------------------------------- promise: spec files are checked like metadata
SPEC_FILES = {
    "not-json": ("{nope", "is not valid JSON"),
    "deep": ('{"effnet_spec": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested deeper than 32"),
    "head-5e7": ("HEAD", "head_channels must be at most 65536"),
    "1M-layers": ("LAYERS", "at most 4096 blocks"),
    "wide-within-each-bound": ("WIDE", "a spec builds at most 2,147,483,648 weights"),
    "latin-1": (b"\xe9t\xe9", "is not UTF-8 text"),
}


@pytest.mark.parametrize("case", list(SPEC_FILES))
def test_hostile_spec_files_are_one_line_naming_the_file(tmp_path, capsys, case):
    from test_faults_runs import tiny_spec

    content, needle = SPEC_FILES[case]
    spec = tiny_spec().to_dict()
    if content == "HEAD":
        content = json.dumps({"effnet_spec": spec | {"head_channels": 50_000_000}})
    elif content == "WIDE":  # every width and ratio under its own bound, the whole far beyond memory
        spec["stages"] = [stage | {"out_channels": 60_000, "expand_ratio": 60} for stage in spec["stages"]]
        content = json.dumps({"effnet_spec": spec})
    elif content == "LAYERS":
        spec["stages"][0]["num_layers"] = 10**6
        content = json.dumps({"effnet_spec": spec})
    path = tmp_path / "spec.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    refused(capsys, ["profile", str(path)], tmp_path, str(path), needle)


# ------------------------------------- promise: config files are read strictly and ranged like the flags they set
CONFIG_FILES = {
    "duplicate-key": (b"epochs: 2\nimage_size: 64\nepochs: 500\n", "duplicate key 'epochs' (first on line 1)"),
    "latin-1": (b"epochs: 2  # caf\xe9\n", "is not UTF-8 text (byte 0xe9 on line 1)"),
    "deep-nesting": (b"a: " + b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested deeper than 32 levels"),
    "nested-32-plus": (b"data: " + b"[" * 40 + b"]" * 40 + b"\n", "nested deeper than 32 levels"),
    "alias-bomb": (
        b"a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b]\n"
        b"d: [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n",
        "more than 10000 values",
    ),
    "image-size-huge": (b"image_size: 100000\n", "image_size must be in [16, 4096], got 100000"),
    "randaugment-ops": (b"randaugment_ops: 100000\n", "randaugment_ops must be in [0, 16]"),
    "threads-huge": (b"threads: 99999999\n", "threads must be in [1, 1024]"),
    "seed-huge": (b"seed: 100000000000000000000000\n", "seed must be in [-2147483648, 2147483647]"),
    "epochs-zero": (b"epochs: 0\n", "epochs must be in [1, 100000]"),
    "lr-nan": (b"lr: .nan\n", "lr must be a finite number"),
    "run-name-newline": (b'run_name: "a\\nb"\n', "run_name must be a plain folder name"),
    "run-name-escape": (b'run_name: "a\\x1b[31mred"\n', "control characters"),
    "unknown-option": (b"epochz: 5\n", "unknown training option(s) ['epochz']"),
    "data-num-train-huge": (b"data:\n  num_train: 100000000000\n", "num_train must be in [1, 2147483647]"),
    "data-render-size-huge": (b"data:\n  render_size: 1000000\n", "render_size must be in [8, 4096]"),
    "not-a-mapping": (b"- 1\n- 2\n", "must hold a mapping"),
}


@pytest.mark.parametrize("case", list(CONFIG_FILES))
def test_hostile_config_files_are_one_line_naming_the_file_before_any_run_folder(tmp_path, capsys, case):
    content, needle = CONFIG_FILES[case]
    config = tmp_path / "c.yaml"
    config.write_bytes(content)
    refused(
        capsys,
        ["train", "--config", str(config), "--output-dir", str(tmp_path / "runs")],
        tmp_path,
        str(config),
        needle,
    )


def test_a_flag_that_replaces_a_bad_file_value_is_what_counts(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_bytes(b"image_size: 100000\nepochs: 0\n")
    line = refused(
        capsys,
        ["train", "--config", str(config), "--image-size", "64", "--output-dir", str(tmp_path / "runs")],
        tmp_path,
        "epochs must be in [1, 100000]",
    )
    assert "image_size" not in line


def test_run_names_with_control_characters_are_refused_from_the_flag(tmp_path, capsys):
    refused(
        capsys,
        ["train", "--run-name", "x\ny", "--output-dir", str(tmp_path / "runs")],
        tmp_path,
        "run_name must be a plain folder name",
        "control characters",
    )


# --------------------------------------------- promise: datasets are read safely and nothing is dropped silently
class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def _cifar10(root: Path) -> Path:
    import pickle

    import numpy as np

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0, 1]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def _spoil_cifar(folder: Path, case: str) -> Path:
    import pickle

    import numpy as np

    batch = folder / "data_batch_2"
    if case == "hostile-pickle":
        batch.write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": [0]}, protocol=2))
    elif case == "truncated":
        batch.write_bytes(batch.read_bytes()[:100])
    elif case == "garbage":
        batch.write_bytes(b"\x00\x01not a pickle at all" * 10)
    elif case == "wrong-shape":
        batch.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2))
    elif case == "labels-count":
        batch.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, protocol=2))
    return batch


CIFAR_CASES = {
    "hostile-pickle": "refusing to load posix.system",
    "truncated": "pickle data was truncated",
    "garbage": "CIFAR batch",
    "wrong-shape": "'data' must be uint8 rows of 3072 values",
    "labels-count": "'labels' must list one label per image",
}


@pytest.mark.parametrize("case", list(CIFAR_CASES))
def test_hostile_or_damaged_cifar_batches_are_one_line_naming_the_file(tmp_path, capsys, case):
    bad = _spoil_cifar(_cifar10(tmp_path / "data"), case)
    argv = ["train", "--data", "cifar10", "--data-root", str(tmp_path / "data"), "--output-dir", str(tmp_path / "r")]
    refused(capsys, argv, tmp_path, str(bad), CIFAR_CASES[case])


def _folder_dataset(root: Path) -> Path:
    from PIL import Image

    for split in ("train", "val"):
        for name, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
            (root / split / name).mkdir(parents=True)
            for index in range(2):
                Image.new("RGB", (40, 30), colour).save(root / split / name / f"{index}.png")
    return root


def test_a_fifo_named_jpg_is_refused_not_waited_on(tmp_path, capsys):
    import os

    data = _folder_dataset(tmp_path / "data")
    fifo = data / "train" / "red" / "pipe.jpg"
    os.mkfifo(fifo)
    argv = ["train", "--data", "folder", "--data-root", str(data), "--output-dir", str(tmp_path / "r")]
    refused(capsys, argv, tmp_path, str(fifo), "not a regular file")
    refused(capsys, ["predict", str(fifo)], tmp_path, str(fifo), "not a regular file")


def test_a_linked_sub_folder_of_a_class_is_named_not_dropped(tmp_path, capsys):
    from PIL import Image

    data = _folder_dataset(tmp_path / "data")
    (tmp_path / "more").mkdir()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "more" / "x.png")
    link = data / "train" / "red" / "more"
    link.symlink_to(tmp_path / "more", target_is_directory=True)
    argv = ["train", "--data", "folder", "--data-root", str(data), "--output-dir", str(tmp_path / "r")]
    refused(capsys, argv, tmp_path, str(link), "is a link to a folder")


def test_an_unreadable_sub_folder_of_a_class_is_named_not_dropped(tmp_path, capsys):
    import os

    data = _folder_dataset(tmp_path / "data")
    locked = data / "train" / "red" / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("this user reads folders whatever their mode (root)")
        argv = ["train", "--data", "folder", "--data-root", str(data), "--output-dir", str(tmp_path / "r")]
        refused(capsys, argv, tmp_path, str(locked), "cannot read the folder")
    finally:
        locked.chmod(0o755)


def test_journal_lines_nested_too_deep_or_not_utf8_count_as_not_finished(tmp_path):
    from effnet.search.journal import Journal

    path = tmp_path / "journal.jsonl"
    journal = Journal(path, "abc")
    journal.record({"trial_id": "good", "status": "ok", "metrics": {"final_val_acc": 0.5}})
    with open(path, "ab") as handle:
        handle.write(b'{"kind": "trial", "trial_id": "deep", "status": "ok", "metrics": ' + b"[" * 100_000)
        handle.write(b"]" * 100_000 + b"}\n")
        handle.write(b'{"kind": "trial", "trial_id": "caf\xe9", "status": "ok"}\n')
    assert list(Journal(path, "abc").finished()) == ["good"]


HUB_CONFIGS = {
    "head-beyond-tensors": (lambda c: c["spec"].update(head_channels=60_000), "head_channels 60000"),
    "num-classes-1e9": (lambda c: c.update(num_classes=10**9), "'num_classes' is 1000000000, but the weights have 3"),
    "preprocess-missing-field": (lambda c: c.update(preprocess={"input_size": 32}), "without ['crop_pct']"),
    "spec-1M-layers": (lambda c: c["spec"]["stages"][0].update(num_layers=10**6), "at most 4096 blocks"),
}


@pytest.mark.parametrize("case", list(HUB_CONFIGS))
def test_a_tampered_hub_config_is_refused_before_the_model_is_built(tiny, tmp_path, case):
    from effnet.weights import load_model
    from effnet.weights.hf import from_pretrained, save_pretrained

    folder = save_pretrained(load_model(tiny), tmp_path / "hub")
    config = json.loads((folder / "config.json").read_text())
    change, needle = HUB_CONFIGS[case]
    change(config)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="config.json") as refused_:
        from_pretrained(folder)
    assert needle in str(refused_.value) and "\n" not in str(refused_.value)


# ------------------------------------------------------------ promise: class lists are read like any other file
CLASS_FILES = {
    "latin-1": (b"caf\xe9\ndog\nfox\n", "is not UTF-8 text (byte 0xe9 on line 1)"),
    "escape-sequence": (b"cat\n\x1b[2Jdog\nfox\n", "class name 2 holds the control character"),
    "wrong-count": (b"cat\ndog\n", "names 2 classes but the model has 3 outputs"),
    "fifo": ("FIFO", "is not a regular file"),
    "folder": ("FOLDER", "is a folder; give a text file with one class name per line"),
}


@pytest.mark.parametrize("command", ["predict", "serve"])
@pytest.mark.parametrize("case", list(CLASS_FILES))
def test_hostile_class_lists_are_one_line_naming_the_file(tiny, photo, tmp_path, capsys, monkeypatch, case, command):
    import os

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server started"))
    content, needle = CLASS_FILES[case]
    names = tmp_path / "names.txt"
    if content == "FIFO":
        os.mkfifo(names)
    elif content == "FOLDER":
        names.mkdir()
    else:
        names.write_bytes(content)
    given = ["--weights", str(tiny), "--classes-file", str(names)]
    argv = ["predict", str(photo), *given] if command == "predict" else ["serve", *given, "--port", "0"]
    refused(capsys, argv, tmp_path, str(names), needle)


def test_onnx_class_names_of_the_wrong_count_are_refused_not_dropped(tiny, photo, tmp_path, capsys):
    import onnx

    good = tmp_path / "good.onnx"
    assert main(["export", "--weights", str(tiny), "--out", str(good), "--no-check"]) == 0
    model = onnx.load(str(good))
    next(prop for prop in model.metadata_props if prop.key == "class_names").value = '["a", "b", "c", "d"]'
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    refused(capsys, ["predict", str(photo), "--weights", str(bad)], tmp_path, str(bad), "lists 4 names for the 3")


@pytest.mark.parametrize(
    ("data", "needle"),
    [({"bogus": 1}, "'config' data options is invalid"), ([1, 2], "'config' data options must be a mapping")],
)
def test_eval_checks_a_checkpoints_recorded_data_options(tiny, tmp_path, capsys, data, needle):
    bad = tmp_path / "last.pt"
    torch.save(_checkpoint(tiny, config={"data": data}), bad)
    refused(capsys, ["eval", str(bad)], tmp_path, str(bad), needle)


@pytest.mark.parametrize(("kind", "needle"), [("fifo", "is not a regular file"), ("folder", "is a folder")])
def test_a_weights_path_that_is_not_a_file_says_what_it_is(photo, tmp_path, capsys, kind, needle):
    import os

    weights = tmp_path / "w.safetensors"
    if kind == "fifo":
        os.mkfifo(weights)
    else:
        weights.mkdir()
    refused(capsys, ["predict", str(photo), "--weights", str(weights)], tmp_path, f"{weights} {needle}")
