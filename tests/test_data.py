"""The procedural dataset, the transform presets and mixup/cutmix."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from effnet.data import (
    CLASS_NAMES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataConfig,
    MixupCutmix,
    ProceduralShapes,
    TorchvisionRandAugment,
    build_datasets,
    eval_transform,
    render_sample,
    train_transform,
)
from effnet.data.procedural import FINE_PERIODS, _stripes


def _digest(image: Image.Image) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


# --- procedural dataset -------------------------------------------------------------------------------------


def test_procedural_is_deterministic_per_seed_and_split() -> None:
    first, again = ProceduralShapes(20, seed=3), ProceduralShapes(20, seed=3)
    other_seed, val = ProceduralShapes(20, seed=4), ProceduralShapes(20, seed=3, split="val")
    for index in (0, 7, 19):
        image, label = first[index]
        assert _digest(image) == _digest(again[index][0]) and label == again[index][1]
        assert _digest(image) != _digest(other_seed[index][0])
        assert _digest(image) != _digest(val[index][0])


def test_procedural_train_and_val_images_are_disjoint() -> None:
    train = {_digest(ProceduralShapes(60, seed=0)[i][0]) for i in range(60)}
    val = {_digest(ProceduralShapes(60, seed=0, split="val")[i][0]) for i in range(60)}
    assert len(train) == 60 and len(val) == 60 and not train & val


def test_procedural_classes_are_balanced_and_named() -> None:
    pair = build_datasets(DataConfig(num_train=50, num_val=24))
    assert pair.num_classes == len(pair.class_names) == len(set(pair.class_names)) == 10
    assert pair.class_names == CLASS_NAMES
    labels = [pair.train[i][1] for i in range(50)]
    assert np.bincount(labels, minlength=10).tolist() == [5] * 10
    assert len(pair.train) == 50 and len(pair.val) == 24


def test_procedural_keeps_rendered_images_unchanged_by_their_users() -> None:
    from PIL import ImageDraw

    from effnet.data.procedural import CACHE_BYTES

    dataset = ProceduralShapes(6, seed=2)
    first, label = dataset[4]
    assert _digest(first) == _digest(render_sample(2, "train", 4)[0]) and label == render_sample(2, "train", 4)[1]
    ImageDraw.Draw(first).rectangle([0, 0, 127, 127], fill=(0, 0, 0))  # a transform drawing on its image
    assert _digest(dataset[4][0]) == _digest(render_sample(2, "train", 4)[0])  # the kept copy is intact
    # Past the memory budget nothing is kept (every access renders again), with the same images.
    huge = ProceduralShapes(CACHE_BYTES // (128 * 128 * 3) + 1, seed=2)
    assert _digest(huge[4][0]) == _digest(render_sample(2, "train", 4)[0]) and huge._cache is None
    assert dataset._cache is not None and sorted(dataset._cache) == [4]


@pytest.mark.parametrize("render_size", [24, 77, 200])
def test_procedural_renders_any_size_as_rgb(render_size: int) -> None:
    image, label = ProceduralShapes(5, seed=1, render_size=render_size)[4]
    assert image.mode == "RGB" and image.size == (render_size, render_size)
    assert 0 <= label < 10
    assert np.asarray(image).std() > 5  # a real picture, not a blank canvas


def _contrast_kept(period: float, size: int) -> float:
    """Fraction of the stripes' contrast (std of their coverage at 128 px) left after a bicubic resize to `size`."""
    coords = (np.arange(128, dtype=np.float32) + 0.5) / 128 - 0.5
    x, y = np.meshgrid(coords, coords)
    coverage = _stripes(0.88 * x + 0.48 * y, period, 1 / 128).astype(np.float32)
    assert coverage.mean() == pytest.approx(0.5, abs=0.05)  # half covered: a flat tone once blurred
    shrunk = np.asarray(Image.fromarray(coverage, mode="F").resize((size, size), Image.BICUBIC))
    return float(shrunk.std() / coverage.std())


def test_fine_stripes_need_resolution() -> None:
    """The stripes that tell the two fills apart fade when shrunk and come back with resolution."""
    for period in np.linspace(*FINE_PERIODS, 4):
        kept = [_contrast_kept(period, size) for size in (32, 64, 96, 128)]
        assert kept == sorted(kept) and kept[0] < 0.35 and kept[-1] > 0.9


def test_procedural_validates_arguments() -> None:
    with pytest.raises(ValueError, match="split"):
        ProceduralShapes(10, split="holdout")
    with pytest.raises(ValueError, match="num_samples"):
        ProceduralShapes(0)
    with pytest.raises(IndexError):
        ProceduralShapes(3)[3]


def test_procedural_works_in_dataloader_workers() -> None:
    dataset = ProceduralShapes(8, seed=5, transform=eval_transform(32, 1.0))
    restored = pickle.loads(pickle.dumps(dataset))
    restored.transform = eval_transform(40, 1.0)  # progressive learning swaps the transform between stages
    images, labels = next(iter(DataLoader(restored, batch_size=8, num_workers=2)))
    assert images.shape == (8, 3, 40, 40) and labels.tolist() == list(range(8))
    assert torch.equal(images[3], restored[3][0])


# --- transforms ------------------------------------------------------------------------------------------------


def _flat_image(colour: tuple[int, int, int], size: tuple[int, int] = (90, 70)) -> Image.Image:
    return Image.new("RGB", size, colour)


@pytest.mark.parametrize("augment", ["randaugment", "autoaugment", "randaugment_tv", "autoaugment_tv", None, "none"])
@pytest.mark.parametrize("size", [32, 57])
def test_train_transform_shape_and_dtype(augment: str | None, size: int) -> None:
    image = ProceduralShapes(1, render_size=96)[0][0]
    out = train_transform(size, augment=augment, re_prob=0.5)(image)
    assert out.shape == (3, size, size) and out.dtype == torch.float32


def test_train_transform_normalizes_with_mean_and_std() -> None:
    colour = (200, 100, 50)
    transform = train_transform(16, scale=(1.0, 1.0), hflip=0.0, augment=None)
    out = transform(_flat_image(colour, (40, 40)))
    expected = [(c / 255 - m) / s for c, m, s in zip(colour, IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    assert torch.allclose(out.mean(dim=(1, 2)), torch.tensor(expected), atol=1e-3)
    custom = train_transform(16, scale=(1.0, 1.0), hflip=0.0, augment=None, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert torch.allclose(custom(_flat_image((255, 0, 255), (40, 40)))[:, 0, 0], torch.tensor([1.0, -1.0, 1.0]))


@pytest.mark.parametrize("augment", ["randaugment", "autoaugment", "randaugment_tv"])
def test_train_transform_pickles_for_workers(augment: str) -> None:
    transform = pickle.loads(pickle.dumps(train_transform(40, augment=augment, magnitude=20, re_prob=0.25)))
    assert transform(ProceduralShapes(1, render_size=64)[0][0]).shape == (3, 40, 40)


def test_random_erasing_changes_pixels() -> None:
    torch.manual_seed(0)
    plain = train_transform(32, scale=(1.0, 1.0), hflip=0.0, augment=None, re_prob=0.0)
    erased = train_transform(32, scale=(1.0, 1.0), hflip=0.0, augment=None, re_prob=1.0)
    image = _flat_image((120, 120, 120), (32, 32))
    base, out = plain(image), erased(image)
    changed = (out - base).abs().amax(dim=0) > 1e-4
    assert 0 < changed.float().mean() < 1
    assert out[:, changed].std() > 0.3  # random per-pixel values, not a flat box


def test_torchvision_randaugment_uses_the_paper_magnitude_scale() -> None:
    rotate = TorchvisionRandAugment._AUGMENTATION_SPACE["Rotate"][0]
    assert float(rotate(11, 224, 224)[10]) == pytest.approx(30.0)  # M=10 = the reference's full 30 degrees
    assert float(rotate(26, 224, 224)[25]) == pytest.approx(75.0)  # V2's M=25 extrapolates linearly
    posterize = TorchvisionRandAugment._AUGMENTATION_SPACE["Posterize"][0](31, 8, 8)
    assert int(posterize.min()) >= 1 and int(posterize[10]) == 4
    torch.manual_seed(0)
    for augment in ("randaugment", "randaugment_tv"):  # both stay valid above 10
        out = train_transform(48, augment=augment, magnitude=25)(ProceduralShapes(1)[0][0])
        assert out.shape == (3, 48, 48) and torch.isfinite(out).all()


def test_transform_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="augment"):
        train_transform(32, augment="trivialaugment")
    with pytest.raises(ValueError, match="interpolation"):
        train_transform(32, interpolation="cubic")
    with pytest.raises(ValueError, match="crop_pct"):
        eval_transform(32, 1.5)


def test_eval_transform_resizes_then_center_crops() -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (150, 200, 3), dtype=np.uint8))
    out = eval_transform(64, 0.875)(image)
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32
    # Reference: shorter side to round(64 / 0.875) = 73, then the central 64 x 64.
    resized = image.resize((round(200 * 73 / 150), 73), Image.BICUBIC)
    left, top = (resized.width - 64) // 2, (73 - 64) // 2
    crop = np.asarray(resized.crop((left, top, left + 64, top + 64)), dtype=np.float32) / 255
    expected = (torch.from_numpy(crop).permute(2, 0, 1) - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(
        IMAGENET_STD
    )[:, None, None]
    assert (out - expected).abs().mean() < 0.02


# --- mixup / cutmix --------------------------------------------------------------------------------------------


def test_no_mixing_gives_smoothed_one_hot() -> None:
    images, targets = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4, 0])
    out, soft = MixupCutmix(5, label_smoothing=0.1)(images, targets)
    assert out is images
    assert soft.shape == (6, 5)
    assert torch.allclose(soft[torch.arange(6), targets], torch.full((6,), 0.9 + 0.02))
    assert torch.allclose(soft.sum(1), torch.ones(6))
    assert torch.allclose(soft[0, 1:], torch.full((4,), 0.02))


def test_mixup_blends_images_and_targets_alike() -> None:
    torch.manual_seed(1)
    images, targets = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    out, soft = MixupCutmix(4, mixup_alpha=0.8, label_smoothing=0.0)(images, targets)
    lam = float(soft[0, 0])
    assert 0 < lam < 1 and torch.allclose(soft.sum(1), torch.ones(4))
    assert float(soft[0, 3]) == pytest.approx(1 - lam)  # sample 0 is mixed with the last one
    assert torch.allclose(out, lam * images + (1 - lam) * images.flip(0), atol=1e-6)


def test_cutmix_pastes_a_box_whose_area_matches_the_targets() -> None:
    torch.manual_seed(2)
    images = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 3, 16, 16).clone()
    targets = torch.tensor([0, 1, 2, 3])
    for _ in range(5):
        out, soft = MixupCutmix(4, cutmix_alpha=1.0, label_smoothing=0.1)(images, targets)
        pasted = (out[0, 0] == 3.0).float().mean()  # pixels of sample 0 that now come from sample 3
        smoothed_lam = float(soft[0, 0])  # lam * (0.9 + 0.025) + (1 - lam) * 0.025
        assert smoothed_lam == pytest.approx((1 - float(pasted)) * 0.9 + 0.025, abs=1e-5)
        assert torch.allclose(soft.sum(1), torch.ones(4))


def test_switch_and_prob_control_which_mix_runs() -> None:
    torch.manual_seed(3)
    images, targets = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    never = MixupCutmix(4, mixup_alpha=1.0, cutmix_alpha=1.0, prob=0.0)
    assert torch.equal(never(images, targets)[0], images)
    with pytest.raises(ValueError, match="prob"):
        MixupCutmix(4, mixup_alpha=1.0, prob=1.5)
    with pytest.raises(ValueError, match="targets"):
        MixupCutmix(4)(images, targets[:3])


def test_learnability_probe_runs_end_to_end(capsys, monkeypatch) -> None:
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "shapes_probe.py"  # a script, not library code
    spec = importlib.util.spec_from_file_location("shapes_probe", path)
    probe = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "shapes_probe", probe)  # dataclasses look their module up
    spec.loader.exec_module(probe)
    main, render_tensor = probe.main, probe.render_tensor

    images, labels = render_tensor(4, seed=0, split="val", render_size=32)
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8
    assert np.array_equal(images[2].permute(1, 2, 0).numpy(), np.asarray(ProceduralShapes(4, 0, "val", None, 32)[2][0]))
    assert labels.tolist() == [0, 1, 2, 3]
    main(["--sizes", "16", "--num-train", "48", "--num-val", "24", "--epochs", "1", "--width", "4", "--threads", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("rendered 72 images") and lines[1].startswith("  16 px: val acc 0.")
