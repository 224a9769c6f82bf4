"""The TF references' eval crop and resizes against values TF 2.21 computed (tests/fixtures/tf/eval.npz, written by
tests/fixtures/make_tf_fixtures.py from tensorflow/tpu's and automl's own eval code on small real photos)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from effnet.preprocess.tf_image import (
    resize_bicubic_legacy,
    resize_bilinear_half_pixel,
    tf_center_crop_window,
    tf_eval_image,
    tpu_crop_padding,
)

FIXTURES = np.load(Path(__file__).parent / "fixtures" / "tf" / "eval.npz")
IMAGES = ("chelsea", "astronaut", "coffee", "gradient")
CASES = [(variant, size, key) for variant, size in (("tpu", 40), ("v2", 40), ("tpu_2021", 50)) for key in IMAGES]
CASES += [("tpu", 72, "chelsea"), ("tpu", 72, "coffee")]


@pytest.mark.parametrize(("variant", "size", "key"), CASES)
def test_eval_image_equals_tf(variant: str, size: int, key: str) -> None:
    expected = FIXTURES[f"{variant}/{size}/{key}"]
    out = tf_eval_image(FIXTURES[f"input/{key}"], size, variant)
    assert out.dtype == np.float32 and out.shape == expected.shape == (size, size, 3)
    # Same float32 operations in the same order as TF's kernels: bit-identical (measured max difference 0.0).
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("key", IMAGES)
def test_bare_resizes_equal_tf_on_non_square_shapes(key: str) -> None:
    image = FIXTURES[f"input/{key}"]
    np.testing.assert_array_equal(resize_bicubic_legacy(image, 29, 53), FIXTURES[f"bicubic/{key}"])
    if f"bilinear/{key}" in FIXTURES:
        np.testing.assert_array_equal(resize_bilinear_half_pixel(image, 29, 53), FIXTURES[f"bilinear/{key}"])


def test_legacy_bicubic_overshoots_and_is_not_clipped() -> None:
    # The reference feeds the unclipped float values to the model: a hard edge rings below 0 and above 255.
    out = resize_bicubic_legacy(FIXTURES["input/chelsea"], 29, 53)
    reference = FIXTURES["bicubic/chelsea"]
    assert out.min() == reference.min() and out.max() == reference.max()
    edge = np.zeros((8, 8, 3), np.uint8)
    edge[:, 4:] = 255
    ringing = resize_bicubic_legacy(edge, 8, 13)
    assert ringing.min() < 0 and ringing.max() > 255


def test_crop_windows_follow_the_references() -> None:
    # 375 x 500 photo at 224: int(224/256 * 375) = 328, offsets ((375 - 328 + 1) // 2, (500 - 328 + 1) // 2).
    assert tf_center_crop_window(375, 500, 224) == (24, 86, 328)
    assert tf_center_crop_window(375, 500, 224, centre="v2") == (23, 86, 328)
    assert [tpu_crop_padding(size) for size in (224, 240, 260, 300, 380, 50)] == [32, 34, 37, 43, 54, 7]
    with pytest.raises(ValueError, match="centre"):
        tf_center_crop_window(10, 10, 8, centre="middle")


def test_pil_input_and_v2_without_crop_from_320() -> None:
    array = FIXTURES["input/coffee"]
    np.testing.assert_array_equal(tf_eval_image(Image.fromarray(array), 40), FIXTURES["tpu/40/coffee"])
    # From 320 px automl resizes the whole image: the result is the bare bilinear resize.
    np.testing.assert_array_equal(tf_eval_image(array, 320, "v2"), resize_bilinear_half_pixel(array, 320, 320))
    with pytest.raises(ValueError, match="variant"):
        tf_eval_image(array, 40, "timm")
    with pytest.raises(ValueError, match="RGB"):
        tf_eval_image(array[..., 0], 40)
