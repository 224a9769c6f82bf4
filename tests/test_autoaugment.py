"""RandAugment / AutoAugment policy_v0 against the TF reference (tensorflow/tpu efficientnet/autoaugment.py).

Expected arguments are the reference's level_to_arg formulas evaluated by hand at M = 5, 9, 10, 15; pixel checks
follow its uint8 arithmetic, the PIL-equivalent ops are compared with PIL itself, and every op except Cutout with
the outputs TF 2.21 computed with the reference's own functions (tests/fixtures/tf/ops.npz, written by
tests/fixtures/make_tf_fixtures.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from effnet.data import TFAutoAugment, TFRandAugment, augment_ops, autoaugment, reference_augment, train_transform
from effnet.data.autoaugment import (
    AUTOAUGMENT_CONSTANTS,
    POLICY_V0,
    RANDAUGMENT_CONSTANTS,
    RANDAUGMENT_OPS,
    SIGNED_OPS,
    apply_op,
    level_to_arg,
)

LEVELS = (5, 9, 10, 15)
# op: argument at M = 5, 9, 10, 15 (RandAugment constants: translate 100 px, cutout 40 px at level 10).
EXPECTED_RANDAUGMENT = {
    "AutoContrast": (None, None, None, None),
    "Equalize": (None, None, None, None),
    "Invert": (None, None, None, None),
    "Rotate": (15.0, 27.0, 30.0, 45.0),  # 30 * M/10 degrees
    "Posterize": (2, 3, 4, 6),  # int(4 * M/10) bits kept
    "Solarize": (128, 230, 256, 384),  # int(256 * M/10)
    "SolarizeAdd": (55, 99, 110, 165),  # int(110 * M/10)
    "Color": (1.0, 1.72, 1.9, 2.8),  # 1.8 * M/10 + 0.1
    "Contrast": (1.0, 1.72, 1.9, 2.8),
    "Brightness": (1.0, 1.72, 1.9, 2.8),
    "Sharpness": (1.0, 1.72, 1.9, 2.8),
    "ShearX": (0.15, 0.27, 0.3, 0.45),  # 0.3 * M/10
    "ShearY": (0.15, 0.27, 0.3, 0.45),
    "TranslateX": (50.0, 90.0, 100.0, 150.0),  # 100 * M/10 pixels
    "TranslateY": (50.0, 90.0, 100.0, 150.0),
    "Cutout": (20, 36, 40, 60),  # int(40 * M/10): half the box side
}


def _photo(size: tuple[int, int] = (96, 80)) -> Image.Image:
    skimage_data = pytest.importorskip("skimage.data")
    return Image.fromarray(skimage_data.chelsea()).resize(size, Image.Resampling.BICUBIC)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int64)


def test_the_sixteen_reference_ops_without_identity() -> None:
    assert len(RANDAUGMENT_OPS) == 16 and "Identity" not in RANDAUGMENT_OPS
    assert set(RANDAUGMENT_OPS) == set(EXPECTED_RANDAUGMENT)
    assert SIGNED_OPS == {"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"}


@pytest.mark.parametrize("name", RANDAUGMENT_OPS)
def test_level_to_arg_matches_the_reference_mapping(name: str) -> None:
    for level, expected in zip(LEVELS, EXPECTED_RANDAUGMENT[name], strict=True):
        arg = level_to_arg(name, level, RANDAUGMENT_CONSTANTS)
        if expected is None:
            assert arg is None
        elif isinstance(expected, int):
            assert arg == expected and isinstance(arg, int), (name, level, arg)
        else:
            assert arg == pytest.approx(expected), (name, level, arg)


def test_autoaugment_uses_its_own_pixel_constants() -> None:
    # distort_image_with_autoaugment: translate_const 250, cutout_const 100.
    assert [level_to_arg("TranslateY", m, AUTOAUGMENT_CONSTANTS) for m in LEVELS] == [125.0, 225.0, 250.0, 375.0]
    assert [level_to_arg("Cutout", m, AUTOAUGMENT_CONSTANTS) for m in LEVELS] == [50, 90, 100, 150]
    with pytest.raises(ValueError, match="unknown augmentation op"):
        level_to_arg("Identity", 5)


def test_level_to_arg_agrees_with_timm_where_timm_follows_the_reference() -> None:
    timm_aa = pytest.importorskip("timm.data.auto_augment")
    hparams = {"translate_const": 100}
    pairs = {"Rotate": "Rotate", "Posterize": "Posterize", "Solarize": "Solarize", "SolarizeAdd": "SolarizeAdd",
             "Color": "Color", "Contrast": "Contrast", "Brightness": "Brightness", "Sharpness": "Sharpness",
             "ShearX": "ShearX", "TranslateX": "TranslateX"}  # fmt: skip
    for ours, theirs in pairs.items():
        for level in (5, 9, 10):  # timm clamps its levels at 10
            (expected,) = timm_aa.LEVEL_TO_ARG[theirs](level, hparams)
            assert abs(level_to_arg(ours, level)) == pytest.approx(abs(expected)), (ours, level)


def test_policy_v0_is_the_reference_table() -> None:
    assert len(POLICY_V0) == 25 and all(len(sub) == 2 for sub in POLICY_V0)
    assert POLICY_V0[0] == (("Equalize", 0.8, 1), ("ShearY", 0.8, 4))
    assert POLICY_V0[15] == (("Rotate", 1.0, 7), ("TranslateY", 0.8, 9))
    assert POLICY_V0[22] == (("Posterize", 0.8, 2), ("Solarize", 0.6, 10))
    assert POLICY_V0[24] == (("Color", 0.8, 6), ("Rotate", 0.4, 5))
    ops = {name for sub in POLICY_V0 for name, _, _ in sub}
    assert ops <= set(RANDAUGMENT_OPS) and "Cutout" not in ops and "TranslateX" not in ops


def test_policy_v0_matches_timms_copy_of_the_reference() -> None:
    timm_aa = pytest.importorskip("timm.data.auto_augment")
    theirs = timm_aa.auto_augment_policy_v0({"translate_const": 250})
    rename = {"TranslateYRel": "TranslateY"}  # timm translates relative to the image size; the reference in pixels
    assert [[(rename.get(op.name, op.name), op.prob, op.magnitude) for op in sub] for sub in theirs] == [
        list(sub) for sub in POLICY_V0
    ]


# --- pixels -------------------------------------------------------------------------------------------------------


def test_solarize_follows_the_reference_uint8_threshold() -> None:
    image = _photo()
    inverted = 255 - _pixels(image)
    # M=10: threshold 256, which the reference compares as uint8 (256 -> 0): every pixel inverts.
    assert np.array_equal(_pixels(apply_op(image, "Solarize", level_to_arg("Solarize", 10))), inverted)
    for level in (5, 15):  # 128 and 384 (= 128 as uint8): PIL's solarize at 128
        out = apply_op(image, "Solarize", level_to_arg("Solarize", level))
        assert np.array_equal(_pixels(out), _pixels(ImageOps.solarize(image, 128)))
    assert np.array_equal(_pixels(apply_op(image, "Solarize", 230)), _pixels(ImageOps.solarize(image, 230)))


@pytest.mark.parametrize(("level", "bits"), [(5, 2), (9, 3), (10, 4), (15, 6), (20, 8), (0, 1), (25, 1)])
def test_posterize_keeps_the_reference_bits(level: int, bits: int) -> None:
    # int(4 * M/10) bits; TF clamps the shift 8 - bits to [0, 7] after its uint8 conversion (so 0 bits and
    # more than 8 bits both keep the top bit).
    image = _photo()
    out = _pixels(apply_op(image, "Posterize", level_to_arg("Posterize", level)))
    mask = (0xFF << (8 - bits)) & 0xFF
    assert np.array_equal(out, _pixels(image) & mask)
    assert len(np.unique(out)) <= 2**bits


def test_pil_equivalent_ops_match_pil() -> None:
    image = _photo()
    assert np.array_equal(_pixels(apply_op(image, "Equalize", None)), _pixels(ImageOps.equalize(image)))
    assert np.array_equal(_pixels(apply_op(image, "Invert", None)), _pixels(ImageOps.invert(image)))
    assert np.array_equal(
        _pixels(apply_op(image, "Brightness", 1.9)), _pixels(ImageEnhance.Brightness(image).enhance(1.9))
    )
    # Rounding differs by at most one level (TF truncates where PIL rounds).
    assert np.abs(_pixels(apply_op(image, "AutoContrast", None)) - _pixels(ImageOps.autocontrast(image))).max() <= 1
    for name, enhancer in (("Color", ImageEnhance.Color), ("Sharpness", ImageEnhance.Sharpness)):
        for factor in (0.1, 1.72, 2.8):
            ours, pil = _pixels(apply_op(image, name, factor)), _pixels(enhancer(image).enhance(factor))
            assert np.abs(ours - pil).max() <= 2, (name, factor)


def test_enhance_ops_are_identity_at_level_5_and_solarize_add_brightens_the_dark() -> None:
    image = _photo()
    for name in ("Color", "Contrast", "Brightness", "Sharpness"):
        assert np.array_equal(_pixels(apply_op(image, name, level_to_arg(name, 5))), _pixels(image))
    out, before = _pixels(apply_op(image, "SolarizeAdd", 110)), _pixels(image)
    dark = before < 128
    assert np.array_equal(out[dark], np.minimum(before[dark] + 110, 255)) and np.array_equal(out[~dark], before[~dark])


def test_contrast_blends_towards_the_reference_constant() -> None:
    # The reference's "mean" is sum(histogram) / 256 = pixel count / 256 (30 for 96 x 80), not the mean grey.
    image = _photo()
    expected = np.clip(30 + 1.9 * (_pixels(image) - 30.0), 0, 255).astype(np.uint8)
    assert np.abs(_pixels(apply_op(image, "Contrast", 1.9)) - expected).max() <= 1


def test_geometry_moves_content_and_fills_grey_128() -> None:
    image = _photo()
    shifted = _pixels(apply_op(image, "TranslateX", 10))
    assert np.array_equal(shifted[:, :-10], _pixels(image)[:, 10:]) and (shifted[:, -10:] == 128).all()
    down = _pixels(apply_op(image, "TranslateY", -7))
    assert np.array_equal(down[7:], _pixels(image)[:-7]) and (down[:7] == 128).all()
    assert np.array_equal(_pixels(apply_op(image, "Rotate", 0.0)), _pixels(image))
    rotated = _pixels(apply_op(image, "Rotate", 30.0))
    assert (rotated[0, 0] == 128).all() and (rotated[-1, -1] == 128).all()  # corners rotate out
    sheared = _pixels(apply_op(image, "ShearX", 0.3))
    assert np.array_equal(sheared[0], _pixels(image)[0]) and (sheared[-1, -5:] == 128).all()


def test_cutout_is_a_grey_box_of_twice_the_pad_size() -> None:
    torch.manual_seed(0)
    image = Image.new("RGB", (200, 200), (10, 200, 30))
    for _ in range(10):
        out = _pixels(apply_op(image, "Cutout", 40))
        grey = (out == 128).all(axis=2)
        rows, cols = np.nonzero(grey)
        assert 0 < grey.sum() <= 80 * 80 and grey.sum() == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
        assert np.array_equal(out[~grey], np.tile([10, 200, 30], ((~grey).sum(), 1)))


# --- against TF's outputs ----------------------------------------------------------------------------------------

TF_OPS = np.load(Path(__file__).parent / "fixtures" / "tf" / "ops.npz")
TF_CASES = sorted(key for key in TF_OPS.files if not key.startswith(("input/", "args/")))


@pytest.mark.parametrize("case", TF_CASES)
def test_ops_equal_the_tf_reference_outputs(case: str) -> None:
    # Every op, pixel for pixel: Shear (TF maps pixel indices, not PIL's pixel centres), Rotate (float32 matrix,
    # ties rounded away from zero), Translate by fractional pixels, Sharpness (TF's float32 conv, truncated).
    name, key = case.split("/")
    image = Image.fromarray(TF_OPS[f"input/{key}"])
    for arg, expected in zip(TF_OPS[f"args/{name}"], TF_OPS[case], strict=True):
        value = None if np.isnan(arg) else int(arg) if name in ("Posterize", "Solarize", "SolarizeAdd") else arg
        out = _pixels(apply_op(image, name, value))
        assert np.array_equal(out, expected), (name, key, value, int((out != expected).sum()))


def test_tf_shear_is_pil_shear_shifted_by_half_the_level() -> None:
    # PIL samples at pixel centres: its shear by l reads x + l (y + 1/2) where TF reads x + l y. With PIL's
    # offset taken out they agree (at levels whose l y never ends in exactly .5, where the two round ties
    # differently); without it they differ on many pixels.
    image = Image.fromarray(TF_OPS["input/coffee"])
    for level in (0.21, -0.84):
        tf_out = _pixels(apply_op(image, "ShearX", level))
        shifted, plain = (
            _pixels(image.transform(image.size, Image.Transform.AFFINE, (1, level, offset, 0, 1, 0),
                                    Image.Resampling.NEAREST, fillcolor=(128, 128, 128)))
            for offset in (-level / 2, 0.0)
        )  # fmt: skip
        assert np.array_equal(tf_out, shifted)
        assert (tf_out != plain).any(axis=2).mean() > 0.05


def _tf_smooth(image: np.ndarray) -> np.ndarray:
    """TF's SMOOTH conv computed directly: nine float32 FMA taps (exact float64 products) on every interior pixel."""
    height, width = image.shape[:2]
    total = np.zeros((max(height - 2, 0), max(width - 2, 0), 3), np.float32)
    weights = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / np.float32(13)
    for dy in range(3):
        for dx in range(3):
            tap = image[dy : dy + total.shape[0], dx : dx + total.shape[1]].astype(np.float64) * float(weights[dy, dx])
            total[...] = tap + total
    smooth = image.copy()
    smooth[1:-1, 1:-1] = np.clip(total, 0, 255).astype(np.uint8)
    return smooth


def test_sharpness_integer_path_equals_tfs_float32_conv_on_random_images() -> None:
    # Sharpness truncates sum / 13 in integers and runs TF's float32 taps only where the sum is a multiple of 13:
    # check it against the float32 conv everywhere on noise, near-flat and few-valued images (many such ties),
    # at factor 0 (the smoothed image itself) and at level 10's 1.9.
    rng = np.random.default_rng(0)
    for trial in range(600):
        height, width = (int(v) for v in rng.integers(1, 24, 2))
        if trial % 3 == 0:
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        elif trial % 3 == 1:
            image = np.clip(int(rng.integers(0, 256)) + rng.integers(-3, 4, (height, width, 3)), 0, 255)
        else:
            image = rng.choice(np.array([0, 1, 9, 127, 128, 200, 254, 255]), (height, width, 3))
        image = image.astype(np.uint8)
        smooth = _tf_smooth(image)
        assert np.array_equal(apply_op(image, "Sharpness", 0.0), smooth), (trial, height, width)
        blended = np.clip(smooth + np.float32(1.9) * (image.astype(np.float32) - smooth), 0, 255).astype(np.uint8)
        assert np.array_equal(apply_op(image, "Sharpness", 1.9), blended), (trial, height, width)


def test_cached_geometry_indices_follow_the_image_size_and_matrix() -> None:
    # The source indices are cached per (size, matrix): outputs from a cold cache equal those after other sizes
    # and arguments (both signs) went through it.
    images = [np.asarray(_photo(size)) for size in ((96, 80), (80, 96), (33, 33))]
    cases = [(name, sign * arg) for name in SIGNED_OPS for sign in (1, -1) for arg in (0.27, 13.5, 30.0)]

    def cold(image: np.ndarray, name: str, arg: float) -> np.ndarray:
        augment_ops._source_index.cache_clear()
        return apply_op(image, name, arg)

    expected = [cold(image, name, arg) for image in images for name, arg in cases]
    for _ in range(2):  # the second pass reads every index from the cache
        warm = [apply_op(image, name, arg) for image in images for name, arg in cases]
        assert all(np.array_equal(a, b) for a, b in zip(expected, warm, strict=True))


def test_policies_chained_on_pixels_equal_op_by_op_on_pil_images(monkeypatch: pytest.MonkeyPatch) -> None:
    # The policies convert once and chain the ops on uint8 pixels: the same result as apply_op on PIL images in turn.
    real, drawn = autoaugment.apply_op, []

    def recording(image: Image.Image | np.ndarray, name: str, arg: float | int | None) -> Image.Image | np.ndarray:
        drawn.append((name, arg))
        return real(image, name, arg)

    monkeypatch.setattr(autoaugment, "apply_op", recording)
    image, compared = _photo((40, 32)), 0
    for seed in range(60):
        for policy in (TFRandAugment(2, 10), TFAutoAugment()):
            torch.manual_seed(seed)
            drawn.clear()
            out = policy(image)
            if any(name == "Cutout" for name, _ in drawn):
                continue  # its box is drawn inside the op
            expected = image
            for name, arg in list(drawn):
                expected = real(expected, name, arg)
            assert np.array_equal(_pixels(out), _pixels(expected)), (seed, policy, drawn)
            compared += bool(drawn)
    assert compared > 80


def test_policies_never_return_their_input_tensor() -> None:
    # The policies chain ops on a view of a tensor's pixels: the result is still a new tensor, the input untouched.
    torch.manual_seed(0)
    tensor = torch.from_numpy(np.array(_photo((32, 24)))).permute(2, 0, 1).contiguous()
    before = tensor.clone()
    for policy in (TFAutoAugment(), TFRandAugment(num_ops=0), TFRandAugment(2, 10)):
        for _ in range(30):
            out = policy(tensor)
            assert out.dtype == torch.uint8 and out.shape == tensor.shape and out.is_contiguous()
            assert out.untyped_storage().data_ptr() != tensor.untyped_storage().data_ptr()
    assert torch.equal(tensor, before)


# --- policies -----------------------------------------------------------------------------------------------------


def test_randaugment_always_applies_the_chosen_op() -> None:
    # The reference draws a probability in [0.2, 0.8] and never uses it: every layer changes the photo (timm's
    # default prob 0.5 would leave about half the images untouched with one layer).
    torch.manual_seed(0)
    image, augment = _photo((48, 40)), TFRandAugment(num_ops=1, magnitude=10)
    unchanged = sum(np.array_equal(_pixels(augment(image)), _pixels(image)) for _ in range(200))
    assert unchanged == 0


def test_autoaugment_applies_each_step_with_its_probability() -> None:
    # P(image unchanged) = mean over sub-policies of the product over steps of (1 - p * [step changes the image]).
    torch.manual_seed(0)
    image = _photo((48, 40))

    def changes(name: str, level: int) -> bool:
        out = apply_op(image, name, level_to_arg(name, level, AUTOAUGMENT_CONSTANTS))
        return not np.array_equal(_pixels(out), _pixels(image))

    expected = np.mean([np.prod([1 - p * changes(n, lv) for n, p, lv in sub]) for sub in POLICY_V0])
    augment, draws = TFAutoAugment(), 600
    unchanged = sum(np.array_equal(_pixels(augment(image)), _pixels(image)) for _ in range(draws)) / draws
    assert abs(unchanged - expected) < 4 * np.sqrt(expected * (1 - expected) / draws) + 0.01, (unchanged, expected)


def test_policies_accept_uint8_tensors_and_refuse_floats() -> None:
    torch.manual_seed(0)
    tensor = torch.from_numpy(np.array(_photo((32, 32)))).permute(2, 0, 1).contiguous()
    for augment in (TFRandAugment(2, 15), TFAutoAugment()):
        out = augment(tensor)
        assert isinstance(out, torch.Tensor) and out.shape == (3, 32, 32) and out.dtype == torch.uint8
        with pytest.raises(ValueError, match="PIL image or a uint8 tensor"):
            augment(tensor.float())
    with pytest.raises(ValueError, match="magnitude"):
        TFRandAugment(2, -1)


def test_train_transform_picks_the_reference_or_torchvision_policy() -> None:
    names = {augment: [type(step).__name__ for step in train_transform(32, augment=augment).transforms]
             for augment in ("randaugment", "autoaugment", "randaugment_tv", "autoaugment_tv")}  # fmt: skip
    assert "TFRandAugment" in names["randaugment"] and "TFAutoAugment" in names["autoaugment"]
    assert "TorchvisionRandAugment" in names["randaugment_tv"] and "AutoAugment" in names["autoaugment_tv"]


def test_per_model_reference_policy_table() -> None:
    # tensorflow/tpu README: AutoAugment checkpoints for B0-B7, RandAugment M=17 (B5) and M=28 (B7, B8);
    # automl effnetv2_configs: V2-B0..B3 'effnetv1_autoaug', V2-S/M/L/XL randaug ram 10/15/20/20.
    assert {reference_augment(f"efficientnet_b{i}").augment for i in range(8)} == {"autoaugment"}
    assert [reference_augment(f"efficientnet_b{i}").magnitude for i in (0, 5, 7, 8)] == [10, 17, 28, 28]
    assert reference_augment("efficientnet_b8").augment == "randaugment"
    assert {reference_augment(f"efficientnetv2_b{i}").augment for i in range(4)} == {"autoaugment"}
    v2 = [reference_augment(f"efficientnetv2_{size}") for size in ("s", "m", "l", "xl")]
    assert [(r.augment, r.magnitude) for r in v2] == [("randaugment", m) for m in (10, 15, 20, 20)]
    assert reference_augment("efficientnet_lite0") == reference_augment("not-a-model")
    assert reference_augment("not-a-model").magnitude == 10
