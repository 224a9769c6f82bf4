"""One model-source resolution (effnet.weights.source): the rules every command, the server and training share."""

from __future__ import annotations

import pytest
import torch

import effnet
from effnet.deploy.predict import top_classes
from effnet.serve import ModelSource as ServeModelSource
from effnet.train import TrainConfig
from effnet.weights import ModelSource, load_source, save_weights
from effnet.weights.source import check_one_source, pretrained_record, read_classes_file


def _tiny_file(tmp_path, classes=3):
    spec = effnet.scale(effnet.get_spec("efficientnet_b0"), width=0.25, depth=0.34, resolution=0.3)
    model = effnet.create_model(spec, num_classes=classes)
    model.class_names = tuple("abc"[:classes])
    return save_weights(model, tmp_path / "tiny.safetensors")


def test_the_server_and_the_library_share_one_model_source():
    assert ServeModelSource is ModelSource


def test_pretrained_or_a_weight_file_not_both():
    with pytest.raises(ValueError, match="not both"):
        check_one_source(True, "w.safetensors")
    with pytest.raises(ValueError, match="not both"):
        ModelSource(pretrained="in1k", weights="w.pth")
    with pytest.raises(ValueError, match="not both"):
        TrainConfig(pretrained=True, weights="w.pth")
    check_one_source(False, None)
    # An exported graph may borrow a record's preprocessing, but it cannot start a training run.
    source = ModelSource(pretrained=True, weights="lite0.onnx")
    with pytest.raises(ValueError, match="exported graph"):
        source.starting_weights()


def test_a_pretrained_tag_belongs_to_its_model():
    with pytest.raises(ValueError, match="is for efficientnet_lite0, not efficientnet_b0"):
        pretrained_record("efficientnet_b0", "efficientnet_lite0.tf_in1k")
    assert pretrained_record("efficientnet_lite0.tf_in1k").model == "efficientnet_lite0"


def test_classes_file_is_strict_and_one_line(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("cat\n\n dog \n", encoding="utf-8")
    assert read_classes_file(names, 2) == ["cat", "dog"]
    with pytest.raises(ValueError, match="names 2 classes but the model has 3 outputs"):
        read_classes_file(names, 3)
    with pytest.raises(ValueError, match="does not exist"):
        read_classes_file(tmp_path / "missing.txt", 2)
    names.write_bytes(b"cat\n\xff\xfe dog\n")
    with pytest.raises(ValueError, match="not UTF-8 text") as err:
        read_classes_file(names, 2)
    assert "\n" not in str(err.value)


def test_class_names_come_from_the_file_then_the_weights_then_imagenet(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("x\ny\nz\n", encoding="utf-8")
    assert ModelSource(classes_file=str(names)).class_names(3, ("a", "b", "c")) == ["x", "y", "z"]
    assert ModelSource().class_names(3, ("a", "b", "c")) == ["a", "b", "c"]
    assert len(ModelSource().class_names(1000, None)) == 1000
    assert ModelSource().class_names(3, ("a", "b")) is None  # names that do not fit are not used


def test_load_source_applies_overrides_and_refuses_random_weights(tmp_path):
    path = _tiny_file(tmp_path)
    model = load_source(ModelSource(weights=str(path), preprocess=(("input_size", 48), ("resize_mode", "squash"))))
    assert (model.preprocess.input_size, model.preprocess.resize_mode, model.class_names) == (
        48,
        "squash",
        tuple("abc"),
    )
    assert not model.training
    with pytest.raises(ValueError, match="--crop-pct would be ignored"):
        load_source(ModelSource(weights=str(path), preprocess=(("resize_mode", "squash"), ("crop_pct", 0.9))))
    with pytest.raises(ValueError, match="random weights"):
        load_source(ModelSource("efficientnet_b0"))
    random = load_source(ModelSource("efficientnet_lite0", padding="same"), random_ok=True)
    assert (random.spec.padding, random.num_classes) == ("same", 1000)
    with pytest.raises(ValueError, match="exported graph"):
        load_source(ModelSource(weights=str(tmp_path / "m.onnx")))


def test_one_top_k_names_unknown_classes_by_index():
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]])
    rows = top_classes(logits, 5, ["a", "b"])  # k past the class count; no name for class 2
    assert [[(s.index, s.name) for s in row] for row in rows] == [
        [(1, "b"), (2, "2"), (0, "a")],
        [(0, "a"), (1, "b"), (2, "2")],
    ]
    assert sum(score.probability for score in rows[0]) == pytest.approx(1.0)
