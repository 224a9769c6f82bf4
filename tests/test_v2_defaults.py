"""EfficientNetV2 per-family defaults as google/automl's released code, and V1's where they differ."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from effnet import create_model, list_models
from effnet.data import MixupCutmix
from effnet.data.mixup import per_sample_cutmix, per_sample_mixup, smooth_one_hot
from effnet.models.registry import get_spec
from effnet.preprocess import IMAGENET_MEAN, LITE_MEAN, default_preprocess, preprocess_transform, uses_v2_preprocessing
from effnet.train import TrainConfig
from effnet.train.reference import with_reference_defaults


@pytest.mark.parametrize("name", [n for n in list_models() if n.startswith("efficientnet")])
def test_bn_momentum_is_tf_0_9_for_v2_and_0_99_for_v1(name: str) -> None:
    # automl hparams bn_momentum=0.9 (TF decay) = PyTorch momentum 0.1; tensorflow/tpu V1 uses 0.99 = 0.01.
    expected = 0.1 if name.startswith("efficientnetv2") else 0.01
    assert get_spec(name).norm_momentum == expected


def test_v2_model_batchnorms_use_momentum_0_1() -> None:
    model = create_model("efficientnetv2_b0")
    assert {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.1}


def test_eval_preprocessing_per_family() -> None:
    # automl preprocess_for_eval: crop res/(res+32) below 320 px, else the whole image; bilinear, (x-128)/128.
    v2_s = default_preprocess(get_spec("efficientnetv2_s"))
    assert (v2_s.input_size, v2_s.resize_mode, v2_s.interpolation, v2_s.mean) == (384, "squash", "bilinear", (0.5,) * 3)
    small = default_preprocess(get_spec("efficientnetv2_s"), 300)
    assert (small.resize_mode, small.crop_pct, small.interpolation) == ("crop", 300 / 332, "bilinear")
    assert default_preprocess(get_spec("efficientnetv2_l"), 320).resize_mode == "squash"
    # V2-B0..B3 train and evaluate with automl's 'effnetv1_' legacy path, i.e. the V1 protocol.
    for name in ("efficientnet_b0", "efficientnetv2_b3", "efficientnet_lite0"):
        pre = default_preprocess(get_spec(name))
        mean = LITE_MEAN if "lite" in name else IMAGENET_MEAN  # the TF Lite builder's (x - 127) / 128
        assert (pre.resize_mode, pre.interpolation, pre.mean) == ("crop", "bicubic", mean), name
        assert pre.crop_pct == pytest.approx(pre.input_size / (pre.input_size + 32))
    assert [uses_v2_preprocessing(get_spec(n)) for n in ("efficientnetv2_xl", "efficientnetv2_b1", "resnet50")] == [
        True, False, False,
    ]  # fmt: skip
    assert create_model("efficientnetv2_s").preprocess == v2_s


def test_v2_eval_keeps_the_whole_image_from_320_px() -> None:
    array = np.full((300, 400, 3), 90, np.uint8)
    array[:20, :20] = (255, 0, 0)  # corners a centre crop would cut away
    array[-20:, -20:] = (0, 0, 255)
    image = Image.fromarray(array)
    whole = preprocess_transform(default_preprocess(get_spec("efficientnetv2_s"), 320))(image)
    cropped = preprocess_transform(default_preprocess(get_spec("efficientnetv2_s"), 288))(image)
    assert whole.shape == (3, 320, 320) and cropped.shape == (3, 288, 288)
    red = torch.tensor([1.0, -1.0, -1.0])  # (255, 0, 0) normalized with mean = std = 0.5
    assert torch.allclose(whole[:, 2, 2], red, atol=0.02) and torch.allclose(whole[:, -3, -3], red.flip(0), atol=0.02)
    assert not torch.allclose(cropped[:, 2, 2], red, atol=0.2)


def test_reference_defaults_fill_only_what_the_run_leaves_open() -> None:
    v2 = with_reference_defaults(TrainConfig(model="efficientnetv2_m"), get_spec("efficientnetv2_m"))
    assert (v2.augment, v2.randaugment_magnitude, v2.mix_mode) == ("randaugment", 15, "per_sample")
    b0 = with_reference_defaults(TrainConfig(), get_spec("efficientnet_b0"))
    assert (b0.augment, b0.randaugment_magnitude, b0.mix_mode) == ("autoaugment", 10, "batch")
    chosen = TrainConfig(augment="randaugment_tv", randaugment_magnitude=7, interpolation="bicubic", mix_mode="batch")
    assert with_reference_defaults(chosen, get_spec("efficientnetv2_s")) == chosen


# --- mixup / cutmix as automl datasets.py ------------------------------------------------------------------------


def _batch(count: int = 8, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    # Image i is constant i + 1, so every output pixel tells which images it came from and in what proportion.
    images = torch.arange(1, count + 1, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, size, size).clone()
    return images, smooth_one_hot(torch.arange(count), count, 0.0)


def test_per_sample_mixup_draws_one_weight_per_image_at_least_half() -> None:
    torch.manual_seed(0)
    images, soft = _batch()
    mixed, targets = per_sample_mixup(images, soft, alpha=0.4)
    weights = targets[torch.arange(8), torch.arange(8)]  # own-class weight = lam_i
    assert (weights >= 0.5).all() and len(set(weights.tolist())) == 8
    own, partner = torch.arange(1.0, 9.0), torch.arange(8.0, 0.0, -1.0)
    assert torch.allclose(mixed[:, 0, 0, 0], weights * own + (1 - weights) * partner)
    assert torch.allclose(mixed, mixed[:, :1, :1, :1].expand_as(mixed))  # a blend, no box


def test_per_sample_cutmix_boxes_and_targets_by_area() -> None:
    torch.manual_seed(0)
    images, soft = _batch(size=32)
    mixed, targets = per_sample_cutmix(images, soft, alpha=1.0)
    own, partner = torch.arange(1.0, 9.0), torch.arange(8.0, 0.0, -1.0)
    for i in range(8):
        pixels = mixed[i, 0]
        pasted = pixels == partner[i]
        assert ((pixels == own[i]) | pasted).all()
        assert targets[i, 7 - i] + targets[i, i] == pytest.approx(1.0)
        assert float(targets[i, 7 - i] if i != 7 - i else 0) == pytest.approx(pasted.float().mean().item())
    areas = {round(float(targets[i, 7 - i]), 4) for i in range(8)}
    assert len(areas) > 2  # each image its own box


def test_released_mixing_splits_the_batch_between_mixup_and_cutmix() -> None:
    torch.manual_seed(0)
    images, _ = _batch(size=32)
    mixer = MixupCutmix(8, mixup_alpha=0.5, cutmix_alpha=0.5, label_smoothing=0.0, mode="per_sample")
    mixed, targets = mixer(images, torch.arange(8))
    first = torch.arange(1.0, 5.0)  # images 1..4 mix with 4..1, images 5..8 with 8..5
    for i in range(4):  # mixup half: one blended value per image, from its own half
        values = mixed[i, 0].unique()
        lam = targets[i, i]
        assert len(values) == 1 and lam >= 0.5
        assert values.item() == pytest.approx(lam * first[i] + (1 - lam) * first[3 - i])
    for i in range(4, 8):  # cutmix half: pixels are the image's own or its partner's within the half
        allowed = torch.tensor([i + 1.0, 12.0 - i])
        assert torch.isin(mixed[i, 0], allowed).all()
    assert torch.allclose(targets.sum(dim=1), torch.ones(8))
    with pytest.raises(ValueError, match="mode"):
        MixupCutmix(8, mixup_alpha=0.2, mode="per_batch")


def test_config_refuses_unknown_augment_and_mix_mode() -> None:
    with pytest.raises(ValueError, match="augment must be one of reference"):
        TrainConfig(augment="trivialaugment")
    with pytest.raises(ValueError, match="mix_mode"):
        TrainConfig(mix_mode="per_batch")
    assert TrainConfig(augment="none").augment == "none" and TrainConfig(augment=None).augment is None
