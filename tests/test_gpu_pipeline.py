"""The batched (GPU) input pipeline against the CPU one: op by op on the same pixels, and in distribution.

Tolerances, per op (measured on photos, noise and flat images at 80 x 97, and 64 x 64 for geometry):
- every RandAugment / AutoAugment op but Color: bit-exact (the same uint8 / float32 / float64 steps and the CPU
  ops' own TF projective matrices);
- Color: <= 1 level on >= 99.9% of values (the luma dot product may round its last float32 bit differently);
- RandomResizedCrop / eval resize: torchvision's tensor resize against PIL's, <= 1 level on >= 99.9% of values,
  never more than 2 (bicubic overshoot when a small box is enlarged).
Distributions: two-sample chi-square (op / sign / argument frequencies) and Kolmogorov-Smirnov (crop box area,
aspect, position; and end to end, per-image mean / spread / left-right balance after the whole train transform)
tests between draws of the CPU path and the batched one, fixed seeds, p > 0.001.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from effnet.data import DataConfig, autoaugment
from effnet.data.autoaugment import RANDAUGMENT_OPS, TFAutoAugment, TFRandAugment, apply_op, level_to_arg
from effnet.data.folder import crop_draft_side, load_rgb, read_encoded
from effnet.data.gpu import (
    BATCHED_OPS,
    BatchEvalTransform,
    BatchTrainTransform,
    GpuInputPipeline,
    autoaugment_plan,
    center_crops,
    decode_batch,
    normalize,
    randaugment_plan,
    random_hflip,
    resolve_input_pipeline,
    sample_crop_boxes,
)
from effnet.data.gpu.crop import resized_crops
from effnet.data.gpu.decode import orient, pil_to_uint8
from effnet.data.gpu.ops import cutout
from effnet.data.transforms import train_transform
from effnet.models.specs import NetSpec, StageSpec
from effnet.preprocess import Preprocess, preprocess_transform
from effnet.train import TrainConfig, fit

scipy_stats = pytest.importorskip("scipy.stats")
LEVELS = (0, 1, 5, 9, 10, 17, 28)  # past 10: the mappings extrapolate (B5 uses 17, B7 28)


@functools.lru_cache(maxsize=8)
def _images(size: tuple[int, int]) -> tuple[Image.Image, ...]:
    skimage_data = pytest.importorskip("skimage.data")
    noise = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    flat = np.full((size[1], size[0], 3), 77, dtype=np.uint8)  # flat channels: AutoContrast / Equalize no-ops
    return (
        Image.fromarray(skimage_data.chelsea()).resize(size, Image.Resampling.BICUBIC),
        Image.fromarray(skimage_data.astronaut()).resize(size, Image.Resampling.BICUBIC),
        Image.fromarray(noise),
        Image.fromarray(flat),
    )


def _batch(images: Sequence[Image.Image]) -> torch.Tensor:
    return torch.stack([pil_to_uint8(image) for image in images])


def _cpu(images: Sequence[Image.Image], name: str, arg: float | int | None) -> np.ndarray:
    return np.stack([np.asarray(apply_op(image, name, arg)) for image in images]).transpose(0, 3, 1, 2).astype(int)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the device run)")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


# Every op on a non-square image; the geometry ops on a square one too (where rotation's centre differs).
OP_CASES = [(name, (97, 80)) for name in RANDAUGMENT_OPS if name != "Cutout"] + [
    (name, (64, 64)) for name in ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("name", "size"), OP_CASES)
def test_batched_op_equals_cpu_op(name: str, size: tuple[int, int], device: str) -> None:
    images = _images(size)
    batch = _batch(images).to(device)
    for level in LEVELS:
        arg = level_to_arg(name, level)
        for sign in (1, -1) if arg is not None else (1,):
            signed = None if arg is None else arg * sign
            expected = _cpu(images, name, signed)
            got = BATCHED_OPS[name](batch, torch.full((len(images),), float(signed or 0), dtype=torch.float64))
            diff = np.abs(got.cpu().numpy().astype(int) - expected)
            if name == "Color":
                assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3, (level, sign)
            else:
                assert diff.max() == 0, (name, level, sign, (diff > 0).mean())


def test_per_sample_arguments_in_one_call() -> None:
    images = _images((97, 80))[:3]
    args = [0.3, -0.15, 0.0]
    got = BATCHED_OPS["ShearX"](_batch(images), torch.tensor(args, dtype=torch.float64))
    for image, arg, out in zip(images, args, got, strict=True):
        assert np.array_equal(out.permute(1, 2, 0).numpy(), np.asarray(apply_op(image, "ShearX", arg)))


@pytest.mark.parametrize("device", DEVICES)
def test_cutout_equals_cpu_with_the_same_centres(device: str) -> None:
    image = _images((97, 80))[0]
    for half in (0, 20, 40, 100):
        torch.manual_seed(half)
        expected = np.asarray(apply_op(image, "Cutout", half))
        torch.manual_seed(half)
        centres = torch.tensor([[int(torch.randint(0, 80, ())), int(torch.randint(0, 97, ()))]])
        got = cutout(_batch([image]).to(device), torch.tensor([half]), centres)[0].permute(1, 2, 0).cpu().numpy()
        assert np.array_equal(got, expected)


def _recorded(monkeypatch: pytest.MonkeyPatch, policy: object, draws: int) -> list[tuple[str, float]]:
    """(name, argument) of every op the CPU policy applies over `draws` calls (the real ops still run)."""
    seen: list[tuple[str, float]] = []
    real = autoaugment.apply_op

    def recording(image: Image.Image, name: str, arg: float | int | None) -> Image.Image:
        seen.append((name, float(arg or 0)))
        return real(image, name, arg)

    monkeypatch.setattr(autoaugment, "apply_op", recording)
    tiny = Image.new("RGB", (4, 4), (90, 120, 200))
    for _ in range(draws):
        policy(tiny)  # type: ignore[operator]
    return seen


def _same_distribution(cpu: list[tuple[str, float]], batched: list[tuple[str, float]]) -> float:
    """Two-sample chi-square p-value over the (op, argument) categories; both must use the same categories."""
    categories = sorted(set(cpu) | set(batched))
    assert set(cpu) == set(batched), set(cpu) ^ set(batched)
    table = np.array([[cpu.count(c) for c in categories], [batched.count(c) for c in categories]])
    return float(scipy_stats.chi2_contingency(table).pvalue)


def test_randaugment_draws_match_cpu_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    cpu = _recorded(monkeypatch, TFRandAugment(2, 9), 2000)
    torch.manual_seed(1)
    batched = randaugment_plan(2000, 2, 9).applied()
    assert len(cpu) == len(batched) == 4000
    assert _same_distribution(cpu, batched) > 1e-3


def test_autoaugment_draws_match_cpu_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    cpu = _recorded(monkeypatch, TFAutoAugment(), 3000)
    torch.manual_seed(1)
    batched = autoaugment_plan(3000).applied()
    assert abs(len(cpu) - len(batched)) < 4 * np.sqrt(len(cpu))  # ops applied per image: same mean
    assert _same_distribution(cpu, batched) > 1e-3


@pytest.mark.parametrize("size", [(300, 451), (500, 120)])  # (500, 120): the central fallback happens often
def test_crop_boxes_match_torchvision_distribution(size: tuple[int, int]) -> None:
    height, width = size
    crop = v2.RandomResizedCrop(224, scale=(0.08, 1.0), antialias=True)
    probe = torch.zeros(3, height, width, dtype=torch.uint8)
    torch.manual_seed(0)
    cpu = np.array(
        [[p["top"], p["left"], p["height"], p["width"]] for p in (crop.make_params([probe]) for _ in range(3000))],
        dtype=float,
    )
    torch.manual_seed(1)
    batched = sample_crop_boxes([size] * 3000, (0.08, 1.0)).numpy().astype(float)
    for column in (cpu, batched):
        assert ((column[:, 0] + column[:, 2] <= height) & (column[:, 1] + column[:, 3] <= width)).all()
    features = [lambda b: b[:, 2] * b[:, 3], lambda b: np.log(b[:, 3] / b[:, 2]), lambda b: b[:, 0], lambda b: b[:, 1]]
    for feature in features:
        assert scipy_stats.ks_2samp(feature(cpu), feature(batched)).pvalue > 1e-3


@pytest.mark.parametrize("augment", ["randaugment", "autoaugment"])
def test_whole_train_transform_statistics_match_cpu(augment: str) -> None:
    # End to end (crop, flip, policy, normalize): per-image mean, spread and left-right balance of 400 draws.
    photo = _images((97, 80))[0]
    cpu_transform = train_transform(48, augment=augment, scale=(0.3, 1.0))
    torch.manual_seed(0)
    cpu = torch.stack([cpu_transform(photo) for _ in range(400)])
    torch.manual_seed(1)
    batched = BatchTrainTransform(48, augment=augment, scale=(0.3, 1.0))([pil_to_uint8(photo)] * 400)
    features = [
        lambda x: x.mean(dim=(1, 2, 3)),
        lambda x: x.std(dim=(1, 2, 3)),
        lambda x: x[..., :24].mean(dim=(1, 2, 3)) - x[..., 24:].mean(dim=(1, 2, 3)),
    ]
    for feature in features:
        assert scipy_stats.ks_2samp(feature(cpu).numpy(), feature(batched).numpy()).pvalue > 1e-3


def test_resized_crop_and_eval_resize_match_pil() -> None:
    skimage_data = pytest.importorskip("skimage.data")
    photo = skimage_data.coffee()  # 400 x 600
    pil, tensor = Image.fromarray(photo), torch.from_numpy(photo).permute(2, 0, 1).contiguous()
    for box in ((10, 20, 200, 250), (0, 0, 400, 600), (50, 60, 100, 90)):
        expected = (
            np.asarray(
                TF.resized_crop(pil, *box, [224, 224], interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
            )
            .transpose(2, 0, 1)
            .astype(int)
        )
        diff = np.abs(resized_crops([tensor], torch.tensor([box]), 224)[0].numpy().astype(int) - expected)
        assert diff.max() <= 2 and (diff > 1).mean() <= 1e-3
    resized = TF.resize(pil, 256, interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
    expected = np.asarray(TF.center_crop(resized, [224, 224])).transpose(2, 0, 1).astype(int)
    diff = np.abs(center_crops([tensor], 224, 0.875)[0].numpy().astype(int) - expected)
    assert diff.max() <= 2 and (diff > 1).mean() <= 1e-3


def test_normalize_and_flip() -> None:
    batch = _batch(_images((40, 30)))
    expected = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5, 0.4, 0.3], [0.2, 0.25, 0.3])])
    assert torch.allclose(normalize(batch, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)), expected(batch), atol=1e-6)
    torch.manual_seed(0)
    many = torch.arange(2000, dtype=torch.uint8).view(2000, 1, 1, 1).expand(2000, 1, 1, 2).clone()
    many[..., 1] = 255
    flipped = random_hflip(many, 0.5)[..., 0] == 255
    assert 0.45 < flipped.float().mean() < 0.55
    assert torch.equal(random_hflip(batch, 0.0), batch)


def test_exif_orientations_match_pil(tmp_path) -> None:
    base = _images((20, 12))[0]
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.png"  # lossless, so pixels compare exactly
        base.save(path, exif=exif)
        expected = pil_to_uint8(load_rgb(path))
        assert torch.equal(orient(pil_to_uint8(base), orientation), expected), orientation
        assert read_encoded(path).orientation == orientation


def test_decode_batch_on_cpu_matches_pil(tmp_path) -> None:
    images = _images((97, 80))[:2]
    paths = []
    for index, image in enumerate(images):
        exif = Image.Exif()
        exif[0x0112] = 6 if index == 0 else 1
        paths.append(tmp_path / f"{index}.jpg")
        image.save(paths[-1], quality=90, exif=exif)
    paths.append(tmp_path / "2.png")
    images[0].save(paths[-1])
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 64)
    items = [read_encoded(path) for path in paths] + [read_encoded_unchecked(tmp_path / "bad.jpg")]
    decoded = decode_batch(items, torch.device("cpu"))
    assert decoded[-1] is None  # a damaged file is reported as missing, not raised
    for path, image in zip(paths, decoded[:-1], strict=True):
        expected = pil_to_uint8(load_rgb(path))
        assert image is not None and image.shape == expected.shape
        assert (image.int() - expected.int()).abs().float().mean() < 1.0  # libjpeg-turbo builds round alike


def read_encoded_unchecked(path) -> object:
    from effnet.data.folder import EncodedImage

    return EncodedImage(torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvJPEG decoding needs a CUDA device")
def test_nvjpeg_decode_matches_cpu(tmp_path) -> None:
    paths = []
    for index, image in enumerate(_images((97, 80))[:2]):
        paths.append(tmp_path / f"{index}.jpg")
        image.save(paths[-1], quality=90)
    items = [read_encoded(path) for path in paths]
    on_gpu = decode_batch(items, torch.device("cuda"))
    on_cpu = decode_batch(items, torch.device("cpu"))
    for gpu, cpu in zip(on_gpu, on_cpu, strict=True):
        assert gpu is not None and cpu is not None and gpu.device.type == "cuda"
        assert (gpu.cpu().int() - cpu.int()).abs().float().mean() < 1.0


def test_batch_transform_end_to_end_on_cpu_tensors(tmp_path) -> None:
    images = _images((97, 80))
    images[0].save(tmp_path / "a.jpg")
    items = [read_encoded(tmp_path / "a.jpg"), pil_to_uint8(images[1]), images[2]]
    pipeline = GpuInputPipeline(torch.device("cpu"))
    for augment in ("randaugment", "autoaugment", "randaugment_tv", None):
        transform = BatchTrainTransform(48, augment=augment, re_prob=0.5)
        out, targets = pipeline.batch(transform, items, torch.tensor([0, 1, 2]))
        assert out.shape == (3, 3, 48, 48) and out.dtype == torch.float32 and torch.isfinite(out).all()
        assert targets.tolist() == [0, 1, 2]


@pytest.mark.parametrize("mode", ["crop", "squash"])
def test_batch_eval_transform_matches_the_cpu_eval_transform(mode: str) -> None:
    preprocess = Preprocess(64, 0.875, "bicubic", (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), resize_mode=mode)
    photos = [image.resize((150, 110), Image.Resampling.BICUBIC) for image in _images((97, 80))]
    expected = torch.stack([preprocess_transform(preprocess)(image) for image in photos])
    got = BatchEvalTransform(preprocess)([pil_to_uint8(image) for image in photos])
    levels = (got - expected).abs() * torch.tensor(preprocess.std).view(1, 3, 1, 1) * 255
    assert got.shape == expected.shape and levels.max() < 2.01 and (levels > 1.01).float().mean() < 1e-3


def test_batch_augmentation_is_a_function_of_its_position() -> None:
    items = [pil_to_uint8(image) for image in _images((97, 80))]
    transform = BatchTrainTransform(32, augment="randaugment", re_prob=0.5)
    targets = torch.arange(len(items))
    state = torch.get_rng_state()
    first = GpuInputPipeline(torch.device("cpu"), seed=3).batch(transform, items, targets, (2, 5))[0]
    assert torch.equal(torch.get_rng_state(), state)  # dropout / mixup draws are untouched
    again = GpuInputPipeline(torch.device("cpu"), seed=3).batch(transform, items, targets, (2, 5))[0]
    assert torch.equal(first, again)  # what a resumed run redraws
    for other in (GpuInputPipeline(torch.device("cpu"), seed=3, rank=1), GpuInputPipeline(torch.device("cpu"))):
        assert not torch.equal(first, other.batch(transform, items, targets, (2, 5))[0])
    assert not torch.equal(first, GpuInputPipeline(torch.device("cpu"), seed=3).batch(transform, items, targets)[0])
    GpuInputPipeline(torch.device("cpu"), seed=2**40, rank=7).batch(transform, items, targets, (300, 10**6))


def test_resolve_input_pipeline() -> None:
    assert resolve_input_pipeline("auto", torch.device("cpu")) == "cpu"
    assert resolve_input_pipeline("auto", torch.device("cuda", 0)) == "gpu"
    assert resolve_input_pipeline("gpu", torch.device("cpu")) == "gpu"
    with pytest.raises(ValueError, match="input_pipeline must be one of"):
        resolve_input_pipeline("dali", torch.device("cpu"))


def _tiny_spec() -> NetSpec:
    stages = (StageSpec("mbconv", 1, 3, 1, 8, 1, 0.25), StageSpec("fused", 4, 3, 2, 16, 1))
    return NetSpec("tiny", stages, stem_channels=8, head_channels=32, resolution=32, dropout=0.1)


@pytest.mark.parametrize("dataset", ["shapes", "folder"])
def test_training_with_the_gpu_pipeline_on_cpu_tensors(tmp_path, dataset: str) -> None:
    data = DataConfig(num_train=16, num_val=8, render_size=48)
    if dataset == "folder":  # JPEGs of two classes, decoded by the pipeline
        for label, name in enumerate(("a", "b")):
            (tmp_path / "photos" / name).mkdir(parents=True)
            for index in range(10):
                image = _images((97, 80))[(index + label) % 3].rotate(index * 30)
                image.save(tmp_path / "photos" / name / f"{index}.jpg", quality=85)
        data = DataConfig(name="folder", root=str(tmp_path / "photos"), val_fraction=0.2)
    config = TrainConfig(
        data=data,
        epochs=1,
        batch_size=8,
        image_size=32,
        input_pipeline="gpu",
        device="cpu",
        augment="randaugment",
        mixup_alpha=0.2,
        ema_decay=0.0,
        output_dir=str(tmp_path),
        run_name="gpu",
        tensorboard=False,
        plot=False,
    )
    result = fit(config, spec=_tiny_spec(), progress=False)
    assert result.history[0]["global_step"] == 2
    assert np.isfinite(result.history[0]["train_loss"]) and np.isfinite(result.final_val_loss)
    with pytest.raises(ValueError, match="input_pipeline must be one of auto, cpu, gpu"):
        fit(config.replace(input_pipeline="dali", run_name="bad"), spec=_tiny_spec(), progress=False)
    assert not (tmp_path / "bad").exists()  # refused before the run folder is made


def test_draft_decoding_keeps_the_pixels_the_crop_needs(tmp_path) -> None:
    photo = _images((97, 80))[0].resize((800, 600), Image.Resampling.BICUBIC)
    photo.save(tmp_path / "big.jpg", quality=90)
    photo.save(tmp_path / "big.png")
    assert crop_draft_side(64, 0.8) == 2 * 83 and crop_draft_side(224, 0.08) == 2 * 915
    assert load_rgb(tmp_path / "big.jpg", 140).size == (200, 150)  # 1/4 scale: 150 >= 140, 1/8 would give 75
    assert load_rgb(tmp_path / "big.jpg", 300).size == (400, 300)
    assert load_rgb(tmp_path / "big.jpg", 301).size == (800, 600)  # half would be 300 < 301: full size
    assert load_rgb(tmp_path / "big.png", 140).size == (800, 600)  # only JPEGs draft
    assert load_rgb(tmp_path / "big.jpg", None).size == (800, 600)
