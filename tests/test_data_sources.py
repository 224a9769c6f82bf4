"""Image-folder and CIFAR datasets: layouts, splits, bad files, safe unpickling and clear errors."""

from __future__ import annotations

import io
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from effnet.data import DataConfig, build_datasets, eval_transform, load_cifar
from effnet.data.cifar import safe_load_batch


def _save(path: Path, image: Image.Image, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)


def _jpeg_bytes(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    noise = np.random.default_rng(sum(colour)).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(noise // 4 + np.array(colour, dtype=np.uint8) // 2).save(buffer, format="JPEG")
    return buffer.getvalue()


def _make_folder(root: Path) -> None:
    """3 classes x 6 readable images (RGB, grayscale, RGBA, palette, 16-bit grey among them) + 2 bad files."""
    for label, name in enumerate(["cat", "dog", "eel"]):
        for i in range(4):
            (root / name).mkdir(parents=True, exist_ok=True)
            (root / name / f"rgb_{i}.jpg").write_bytes(_jpeg_bytes((60 * label, 30 * i, 200)))
        _save(root / name / "grey.png", Image.new("L", (30, 20), 40 * label))
        _save(root / name / "alpha.png", Image.new("RGBA", (20, 30), (255, 0, 0, 0 if label else 255)))
    _save(root / "cat" / "palette.gif", Image.new("P", (16, 16), 3))
    _save(root / "dog" / "deep.png", Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)))
    (root / "eel" / "corrupt.jpg").write_bytes(b"this is not an image at all")
    (root / "eel" / "notes.txt").write_text("ignored: not an image extension")
    # A JPEG cut in half: its header is fine (passes the scan) but decoding fails at load time.
    whole = _jpeg_bytes((1, 2, 3))
    (root / "dog" / "truncated.jpg").write_bytes(whole[: len(whole) * 2 // 3])


def test_folder_split_skips_bad_files_and_converts_to_rgb(tmp_path: Path, caplog) -> None:
    _make_folder(tmp_path)
    with caplog.at_level(logging.WARNING):
        pair = build_datasets(DataConfig(name="folder", root=str(tmp_path), val_fraction=0.25, seed=1))
    assert pair.class_names == ["cat", "dog", "eel"] and pair.num_classes == 3
    assert "skipped 1 unreadable image" in caplog.text and "corrupt.jpg" in caplog.text
    assert pair.train.num_skipped + pair.val.num_skipped == 1
    total = len(pair.train) + len(pair.val)
    assert total == 7 + 8 + 6  # 21 readable-looking files; the truncated JPEG is caught later
    assert len(pair.val) == 2 + 2 + 2 and set(pair.val.targets) == {0, 1, 2}
    for dataset in (pair.train, pair.val):
        for index in range(len(dataset)):
            image, label = dataset[index]
            assert image.mode == "RGB" and 0 <= label < 3
    paths = {os.path.basename(p): p for p, _ in pair.train.samples + pair.val.samples}
    dataset = pair.train if paths["grey.png"] in [p for p, _ in pair.train.samples] else pair.val
    grey = dataset[[p for p, _ in dataset.samples].index(paths["grey.png"])][0]
    assert len(set(grey.getpixel((0, 0)))) == 1  # grey stays grey in 3 channels


def test_transparent_and_16_bit_images_become_sensible_rgb(tmp_path: Path) -> None:
    from effnet.data import load_rgb

    _save(tmp_path / "clear.png", Image.new("RGBA", (4, 4), (255, 0, 0, 0)))
    _save(tmp_path / "deep.png", Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16)))
    assert load_rgb(tmp_path / "clear.png").getpixel((0, 0)) == (255, 255, 255)  # fully transparent -> white
    assert load_rgb(tmp_path / "deep.png").getpixel((0, 0)) == (128, 128, 128)  # not clipped to 255


def test_truncated_file_is_replaced_and_counted_at_load_time(tmp_path: Path, caplog) -> None:
    _make_folder(tmp_path)
    pair = build_datasets(DataConfig(name="folder", root=str(tmp_path), val_fraction=0.25, seed=1))
    dataset = pair.train if any("truncated" in p for p, _ in pair.train.samples) else pair.val
    position = [os.path.basename(p) for p, _ in dataset.samples].index("truncated.jpg")
    with caplog.at_level(logging.WARNING):
        image, label = dataset[position]
    assert dataset.load_failures == 1 and "truncated.jpg" in caplog.text
    assert (image, label) == dataset[(position + 1) % len(dataset)]  # the next sample stands in
    assert dataset.load_failures == 1  # counted once, not on every visit
    # The same happens inside DataLoader workers: the batch arrives whole.
    dataset.transform = eval_transform(24, 1.0)
    batches = list(DataLoader(dataset, batch_size=len(dataset), num_workers=2))
    assert batches[0][0].shape == (len(dataset), 3, 24, 24)


def test_folder_split_is_deterministic_and_seeded(tmp_path: Path) -> None:
    _make_folder(tmp_path)

    def val_files(seed: int) -> list[str]:
        pair = build_datasets(DataConfig(name="folder", root=str(tmp_path), val_fraction=0.5, seed=seed))
        train = {p for p, _ in pair.train.samples}
        assert not train & {p for p, _ in pair.val.samples}
        return sorted(p for p, _ in pair.val.samples)

    assert val_files(0) == val_files(0)
    assert any(val_files(0) != val_files(seed) for seed in (1, 2, 3))


def test_train_val_layout(tmp_path: Path) -> None:
    for split, count in (("train", 3), ("val", 2)):
        for name in ("ant", "bee"):
            for i in range(count):
                _save(tmp_path / split / name / f"{i}.png", Image.new("RGB", (9, 9), (i, 0, 0)))
    pair = build_datasets(DataConfig(name="folder", root=str(tmp_path)))
    assert (len(pair.train), len(pair.val), pair.class_names) == (6, 4, ["ant", "bee"])
    assert all("/val/" in p for p, _ in pair.val.samples)
    _save(tmp_path / "val" / "wasp" / "0.png", Image.new("RGB", (9, 9)))
    with pytest.raises(ValueError, match="wasp"):
        build_datasets(DataConfig(name="folder", root=str(tmp_path)))


def test_clear_errors_for_bad_configs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        DataConfig(name="imagenet")
    with pytest.raises(ValueError, match="needs a root"):
        DataConfig(name="folder")
    with pytest.raises(ValueError, match="does not exist"):
        build_datasets(DataConfig(name="folder", root=str(tmp_path / "missing")))
    with pytest.raises(ValueError, match="no class sub-folders"):
        build_datasets(DataConfig(name="folder", root=str(tmp_path)))
    with pytest.raises(ValueError, match="val_fraction"):
        DataConfig(val_fraction=1.0)


# --- CIFAR -------------------------------------------------------------------------------------------------------


def _write_batch(path: Path, content: dict) -> None:
    # Like the published files: a py2-era pickle (protocol 2) with bytes keys.
    path.write_bytes(pickle.dumps({k.encode(): v for k, v in content.items()}, protocol=2))


def _make_cifar10(root: Path, per_batch: int = 3) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        _write_batch(folder / name, {"data": data, "labels": labels, "batch_label": b"x"})
    _write_batch(folder / "batches.meta", {"label_names": [f"c{i}".encode() for i in range(10)]})
    return folder


def test_cifar10_reads_python_batches(tmp_path: Path) -> None:
    folder = _make_cifar10(tmp_path)
    first = safe_load_batch(folder / "data_batch_1")
    pair = build_datasets(DataConfig(name="cifar10", root=str(tmp_path)))  # the parent folder also works
    assert (len(pair.train), len(pair.val), pair.num_classes) == (15, 3, 10)
    assert pair.class_names[:2] == ["c0", "c1"]
    image, label = pair.train[1]
    assert image.size == (32, 32) and image.mode == "RGB" and label == first["labels"][1]
    pixels = np.asarray(image)
    row = first["data"][1]
    # Channel-planar rows: red plane first, then green, then blue; each plane row-major.
    assert pixels[0, 0].tolist() == [row[0], row[1024], row[2048]]
    assert pixels[2, 5].tolist() == [row[2 * 32 + 5], row[1024 + 69], row[2048 + 69]]
    pair.train.transform = eval_transform(16, 1.0)
    assert pair.train[0][0].shape == (3, 16, 16)


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = np.zeros((4, 3072), dtype=np.uint8)
    for name in ("train", "test"):
        _write_batch(folder / name, {"data": data, "fine_labels": [0, 99, 5, 7], "coarse_labels": [0, 1, 2, 3]})
    _write_batch(folder / "meta", {"fine_label_names": [f"f{i}".encode() for i in range(100)]})
    train, test, classes = load_cifar(folder, "cifar100")
    assert len(classes) == 100 and train.targets == [0, 99, 5, 7] and len(test) == 4


def test_cifar_missing_files_name_what_is_expected(tmp_path: Path) -> None:
    folder = _make_cifar10(tmp_path)
    (folder / "test_batch").unlink()
    with pytest.raises(ValueError, match="missing test_batch"):
        build_datasets(DataConfig(name="cifar10", root=str(folder)))
    with pytest.raises(ValueError, match="cifar-100-python"):
        build_datasets(DataConfig(name="cifar100", root=str(tmp_path)))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_loader_refuses_code_in_pickles(tmp_path: Path) -> None:
    folder = _make_cifar10(tmp_path)
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": [0]}, protocol=2))
    with pytest.raises(ValueError, match="data_batch_2 is not a CIFAR batch .*refusing to load .*system"):
        load_cifar(folder, "cifar10")


def test_cifar_tensor_arrays_survive_protocol_5(tmp_path: Path) -> None:
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({"data": np.arange(6, dtype=np.uint8), "labels": [1]}, protocol=5))
    assert torch.equal(torch.from_numpy(safe_load_batch(path)["data"]), torch.arange(6, dtype=torch.uint8))
