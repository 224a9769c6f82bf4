"""Bad input to every command is one line on stderr and exit code 2, never a traceback or a silent wrong result
(issue 12: config and spec files, weight files, output paths, bounds, API tensors, image folders)."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from effnet import create_model
from effnet.cli import main
from effnet.data import DataConfig, build_datasets
from effnet.data.folder import load_rgb
from effnet.weights import save_weights
from test_faults_runs import tiny_spec


def one_error_line(capsys, *needles: str) -> str:
    """The single stderr line of a failed command, checked for each needle (case-insensitive)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    for needle in needles:
        assert needle.lower() in err[0].lower(), err[0]
    return err[0]


# ------------------------------------------------------------------------------------------ config files
@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('epochs: "ten"', "epochs must be a whole number"),
        ("epochs: 1.5", "epochs must be a whole number"),
        ("epochs: true", "epochs must be a whole number"),
        ('lr: "0.1"', "lr must be a finite number"),
        ("lr: .nan", "lr must be a finite number"),
        ("device: tpu", "device must be"),
        ("data: [1, 2]", "data must be a mapping"),
        ("data: {num_train: many}", "num_train must be a whole number"),
        ("weight_decay: -1", "weight_decay must be >= 0"),
        ("crop_scale: [0.5]", "crop_scale must be a list of 2"),
        ("hflip: 2", "hflip must be a probability"),
        ("interpolation: cubic", "interpolation must be one of"),
        ("run_name: ../../x", "run_name must be a plain folder name"),
        ("epochz: 3", "unknown training option"),
        ("[1, 2]", "must hold a mapping"),
        ("epochs: [", "cannot read config file"),
    ],
)
def test_config_file_values_are_checked_by_type_and_range_when_read(tmp_path, capsys, text, needle):
    (tmp_path / "c.yaml").write_text(text + "\n")
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--output-dir", str(tmp_path / "runs")]) == 2
    one_error_line(capsys, needle)
    assert not (tmp_path / "runs").exists()  # refused before anything was created


# -------------------------------------------------------------------------------------------- spec files
def _spec_with(**changes) -> dict:
    spec = tiny_spec().to_dict()
    stage = changes.pop("stage0", None)
    if stage:
        spec["stages"] = [dict(spec["stages"][0], **stage), *spec["stages"][1:]]
    return {**spec, **changes}


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        (_spec_with(stem_channels=-8), "stem_channels"),
        (_spec_with(in_channels=0), "in_channels"),
        (_spec_with(head_channels=0), "head_channels"),
        (_spec_with(stem_channels="8"), "stem_channels must be a whole number"),
        (_spec_with(stage0={"out_channels": "16"}), "out_channels must be a whole number"),
        (_spec_with(stage0={"se_ratio": -0.5}), "se_ratio"),
        (_spec_with(stages={"a": 1}), "stages must be a list"),
        ({k: v for k, v in _spec_with().items() if k != "name"}, "name"),
        (_spec_with(stage0={"kernels": 3}), "invalid spec"),
    ],
)
def test_bad_spec_files_are_one_line(tmp_path, capsys, spec, needle):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"effnet_spec": spec}))
    assert main(["profile", str(path)]) == 2
    one_error_line(capsys, needle)


# ------------------------------------------------------------------------------------------ weight files
@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "chelsea.png"
    Image.fromarray(skdata.chelsea()).save(path)
    return path


def _safetensors_cases(good: bytes) -> dict[str, bytes]:
    (header_len,) = struct.unpack("<Q", good[:8])
    header = json.loads(good[8 : 8 + header_len])
    name = next(key for key in header if key != "__metadata__")
    header[name]["data_offsets"] = [0, 10**12]
    bad_offsets = json.dumps(header).encode()
    return {
        "garbage header": struct.pack("<Q", 20) + b"{this is not json!!}" + good[28:],
        "2^62 header length": struct.pack("<Q", 2**62) + good[8:],
        "truncated": good[: len(good) // 2],
        "4 bytes": good[:4],
        "bad offsets": struct.pack("<Q", len(bad_offsets)) + bad_offsets + good[8 + header_len :],
    }


def test_corrupt_safetensors_and_refused_pickles_are_one_line(tmp_path, capsys, photo):
    spec_path = tiny_spec().save(tmp_path / "tiny.json")
    good = save_weights(create_model(tiny_spec(), num_classes=3), tmp_path / "good.safetensors").read_bytes()
    cases = {f"{name}.safetensors": data for name, data in _safetensors_cases(good).items()}
    meta_spec = good.replace(b'\\"stem_channels\\": 8,', b'\\"stem_channels\\": 0,')  # same length
    assert meta_spec != good
    cases["tampered spec metadata.safetensors"] = meta_spec
    torch.save({"args": __import__("argparse").Namespace(x=1)}, tmp_path / "pickle.pt")  # needs code to load
    torch.save({"model": "not tensors"}, tmp_path / "strings.pt")
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    for name in [*cases, "pickle.pt", "strings.pt"]:
        code = main(["predict", str(photo), "--model", str(spec_path), "--weights", str(tmp_path / name)])
        assert code == 2, name
        line = one_error_line(capsys, name.split(".")[0] if name.endswith(".pt") else "")
        assert "weights_only=False" not in line and "will likely succeed" not in line, line


# ------------------------------------------------------------------- models trained here are usable everywhere
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A 1-epoch run of the tiny spec on the 10-class shapes: its best checkpoint."""
    root = tmp_path_factory.mktemp("trained")
    spec_path = tiny_spec().save(root / "tiny.json")
    args = [
        "train",
        "--model",
        str(spec_path),
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--num-train",
        "32",
        "--num-val",
        "16",
        "--image-size",
        "32",
        "--no-tensorboard",
        "--no-plot",
        "--quiet",
        "--output-dir",
        str(root),
        "--run-name",
        "run",
    ]
    assert main(args) == 0
    return root / "run" / "checkpoints" / "best.pt"


def test_predict_cam_export_take_a_training_checkpoint_with_its_classes(trained, tmp_path, capsys, photo):
    from effnet.data.procedural import CLASS_NAMES

    capsys.readouterr()
    assert main(["predict", str(photo), "--weights", str(trained), "--top-k", "10", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)["top"]
    assert len(top) == 10 and {entry["name"] for entry in top} == set(CLASS_NAMES)
    assert main(["cam", str(photo), "--weights", str(trained), "--out", str(tmp_path / "cam")]) == 0
    assert len(list((tmp_path / "cam").glob("chelsea_*.png"))) == 1
    out = tmp_path / "m.onnx"
    assert main(["export", "--weights", str(trained), "--out", str(out), "--resolution", "32"]) == 0
    assert out.is_file()
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    capsys.readouterr()
    assert main(["predict", str(photo), "--weights", str(trained), "--classes-file", str(names)]) == 2
    one_error_line(capsys, "names 2 classes but the model has 10")
    assert main(["predict", str(photo), "--weights", str(trained), "--classes-file", str(tmp_path / "no")]) == 2
    one_error_line(capsys, "does not exist")


def test_cam_writes_one_overlay_per_input_even_with_equal_file_names(trained, tmp_path, capsys, photo):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "cat.png").write_bytes(photo.read_bytes())
    out = tmp_path / "cam"
    assert (
        main(
            [
                "cam",
                str(tmp_path / "a" / "cat.png"),
                str(tmp_path / "b" / "cat.png"),
                "--weights",
                str(trained),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert len(list(out.glob("cat_*.png"))) == 2
    assert "wrote 2 overlays" in capsys.readouterr().out


def test_cam_output_paths_and_bomb_images(trained, tmp_path, capsys, photo):
    (tmp_path / "file").write_text("x")
    assert main(["cam", str(photo), "--weights", str(trained), "--out", str(tmp_path / "file")]) == 2
    one_error_line(capsys, "is not a folder")
    bomb = tmp_path / "bomb.png"
    Image.new("L", (1, 1)).save(bomb)
    data = bytearray(bomb.read_bytes())
    data[16:24] = struct.pack(">II", 40000, 40000)  # IHDR claims 1.6 G pixels
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    bomb.write_bytes(bytes(data))
    assert main(["cam", str(bomb), str(photo), "--weights", str(trained), "--out", str(tmp_path / "c")]) == 0
    assert "bomb.png: cannot read" in capsys.readouterr().err
    assert len(list((tmp_path / "c").glob("chelsea_*.png"))) == 1


# ----------------------------------------------------------------------------------------- bounds and paths
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["scale", "--phi", "1e9"], "phi must be in"),
        (["scale", "--phi", "60"], "phi must be in"),
        (["scale", "--width", "1e9"], "width multiplier must be at most 16"),
        (["scale", "--depth", "1e6"], "depth multiplier must be at most 64"),
        (["scale", "--resolution", "1e7"], "resolution multiplier must be at most 32"),
        (["export", "--model", "TINY", "--opset", "5"], "opset must be in"),
        (["export", "--model", "TINY", "--resolution", "8"], "--resolution: must be in [32, 4096]"),
        (["bench", "TINY", "--batch-size", "100000"], "--batch-size: must be in"),
        (["eval", "NOFILE"], "does not exist"),
        (["export", "--model", "TINY", "--out", "/proc/forbidden/x.onnx"], "/proc/forbidden"),
    ],
)
def test_out_of_range_values_and_unwritable_paths_are_one_line(tmp_path, capsys, args, needle, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec_path = str(tiny_spec().save(tmp_path / "tiny.json"))
    args = [spec_path if a == "TINY" else str(tmp_path / "none.pt") if a == "NOFILE" else a for a in args]
    assert main(args) == 2
    one_error_line(capsys, needle)
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*tmp*"))


# ---------------------------------------------------------------------------------------------------- API
@pytest.mark.parametrize("dtype", [torch.float64, torch.uint8, torch.float16])
def test_wrong_input_dtypes_are_a_value_error_that_says_what_to_do(dtype):
    model = create_model(tiny_spec(), num_classes=3).eval()
    with pytest.raises(ValueError, match="convert|x.float"):
        model(torch.zeros(1, 3, 32, 32, dtype=dtype))


def test_num_classes_must_be_a_whole_number():
    with pytest.raises(ValueError, match="whole number"):
        create_model(tiny_spec(), num_classes=2.5)


# ------------------------------------------------------------------------------------------ image folders
def _folder(root: Path, classes: dict[str, int]) -> Path:
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            Image.fromarray(np.full((8, 8, 3), index * 20, np.uint8)).save(root / name / f"{index}.png")
    return root


def test_an_empty_or_undecodable_class_folder_is_named(tmp_path):
    root = _folder(tmp_path / "d", {"a": 4, "b": 4, "empty": 0})
    with pytest.raises(ValueError, match="empty has no readable images"):
        build_datasets(DataConfig(name="folder", root=str(root)))
    (root / "empty" / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="empty has no readable images"):
        build_datasets(DataConfig(name="folder", root=str(root)))


def test_a_class_link_back_into_the_dataset_is_refused(tmp_path):
    root = _folder(tmp_path / "d", {"a": 4, "b": 4})
    (root / "x").symlink_to(".")
    with pytest.raises(ValueError, match="x is a link to"):
        build_datasets(DataConfig(name="folder", root=str(root)))
    (root / "x").unlink()
    (root / "x").symlink_to("a")
    with pytest.raises(ValueError, match="overlaps a"):
        build_datasets(DataConfig(name="folder", root=str(root)))


def test_non_utf8_file_names_split_like_any_other(tmp_path):
    root = _folder(tmp_path / "d", {"a": 4, "b": 4})
    odd = root / "a" / b"caf\xe9.png".decode(errors="surrogateescape")  # Latin-1 bytes, not UTF-8
    Image.new("RGB", (8, 8)).save(odd)
    pair = build_datasets(DataConfig(name="folder", root=str(root), val_fraction=0.25))
    assert len(pair.train) + len(pair.val) == 9


def test_exif_rotated_photos_are_turned_upright(tmp_path):
    upright = Image.fromarray(skdata.chelsea())  # 451 wide, 300 high
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the sensor wrote
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    stored.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    loaded = load_rgb(tmp_path / "phone.jpg")
    assert loaded.size == upright.size
    diff = np.abs(np.asarray(loaded, np.float32) - np.asarray(upright, np.float32)).mean()
    assert diff < 4.0  # JPEG noise only


def test_weights_of_a_deeper_model_do_not_get_the_classifier_only_hint():
    from effnet.weights.io import load_state_dict

    stages = list(tiny_spec().stages)
    stages[-1] = stages[-1].__class__(**{**stages[-1].__dict__, "num_layers": 2})
    deeper = create_model(tiny_spec().replace(name="deeper", stages=tuple(stages)), num_classes=7)
    with pytest.raises(ValueError) as caught:  # classifier shapes differ and a block is extra
        load_state_dict(create_model(tiny_spec(), num_classes=3), deeper.state_dict())
    assert "do not fit" in str(caught.value) and "only the classifier differs" not in str(caught.value)
