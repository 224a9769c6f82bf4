"""Hugging Face Hub tags, offline: a real HF cache folder on disk holding a timm-layout file, loaded by the user path.

No machine here reaches the Hub, so each test writes the cache exactly as huggingface_hub lays it out
(models--org--name/{blobs/<sha256>, snapshots/<rev>/<file> -> ../../blobs/<sha256>, refs/main}) and runs with
HF_HUB_OFFLINE on.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import effnet
from effnet.weights.pretrained import get_pretrained

huggingface_hub = pytest.importorskip("huggingface_hub")
timm = pytest.importorskip("timm")

REVISION = "0123456789abcdef0123456789abcdef01234567"


def put_in_cache(cache: Path, repo: str, filename: str, payload: bytes) -> Path:
    """Write `payload` as `repo`'s `filename` at refs/main, in huggingface_hub's cache layout."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    sha = hashlib.sha256(payload).hexdigest()
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    (folder / "blobs" / sha).write_bytes(payload)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(REVISION)
    snapshot = folder / "snapshots" / REVISION
    snapshot.mkdir(parents=True, exist_ok=True)
    link = snapshot / filename
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path("..") / ".." / "blobs" / sha)
    return link


def timm_file(name: str, tmp_path: Path) -> tuple[torch.nn.Module, bytes]:
    """A timm model with random (calibrated) weights and its state dict as safetensors bytes, as on the Hub."""
    torch.manual_seed(0)
    twin = timm.create_model(name, pretrained=False)
    generator = torch.Generator().manual_seed(0)
    for module in twin.modules():  # O(1) activations so that a wrong padding / eps would show (see test_parity)
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    twin.train()
    with torch.no_grad():
        twin(torch.randn(4, 3, 67, 67, generator=generator))
    path = tmp_path / "model.safetensors"
    save_file({key: value.contiguous() for key, value in twin.state_dict().items()}, str(path))
    return twin.eval(), path.read_bytes()


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline, as HF_HUB_CACHE=... HF_HUB_OFFLINE=1 give a user."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads both variables when it is imported; it is imported already, so set its constants too.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.mark.parametrize(
    ("tag", "timm_name"),
    [("efficientnet_b0.ra_in1k", "efficientnet_b0"), ("efficientnet_b0.tf_ns_jft_in1k", "tf_efficientnet_b0")],
)
def test_cached_hub_file_loads_offline_with_the_tags_settings(hf_cache, tmp_path, tag, timm_name):
    record = get_pretrained(tag)
    twin, payload = timm_file(timm_name, tmp_path)
    put_in_cache(hf_cache, record.repo, record.path, payload)
    model = effnet.create_model(tag, pretrained=True).eval()
    assert (model.spec.padding, model.spec.norm_eps) == (record.padding, record.norm_eps)
    assert model.preprocess == record.preprocess and model.class_names[285] == "Egyptian cat"
    x = torch.randn(2, 3, 67, 67)
    with torch.no_grad():
        ours, theirs = model(x), twin(x)
    assert theirs.std() > 0.05 and (ours - theirs).abs().max().item() < 1e-4


def test_uncached_hub_file_offline_names_the_repo_and_the_download_command(hf_cache):
    record = get_pretrained("efficientnetv2_s.tf_in21k_ft_in1k")
    with pytest.raises(ValueError, match="not in the Hugging Face cache") as info:
        effnet.create_model("efficientnetv2_s", pretrained="tf_in21k_ft_in1k")
    message = str(info.value)
    assert record.repo in message and "hf download timm/tf_efficientnetv2_s.in21k_ft_in1k model.safetensors" in message


def test_changed_cached_file_is_refused(hf_cache, tmp_path):
    record = get_pretrained("efficientnet_lite0.tf_in1k")
    _, payload = timm_file("tf_efficientnet_lite0", tmp_path)
    link = put_in_cache(hf_cache, record.repo, record.path, payload)
    blob = link.resolve()
    blob.write_bytes(payload[:-16] + bytes(16))  # same name (the sha256 it should have), other bytes
    with pytest.raises(ValueError, match="checksum mismatch"):
        effnet.create_model("efficientnet_lite0", pretrained="tf_in1k")


def test_missing_hub_client_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    with pytest.raises(ValueError, match=r"pip install 'effnet\[hub\]'"):
        get_pretrained("efficientnet_b3.tf_in1k").local_path()


def test_cli_predicts_offline_from_the_cache(hf_cache, tmp_path):
    """The user's command in a fresh process: HF_HUB_CACHE / HF_HUB_OFFLINE from the environment, nothing patched."""
    from PIL import Image

    record = get_pretrained("efficientnet_b0.ra_in1k")
    _, payload = timm_file("efficientnet_b0", tmp_path)
    put_in_cache(hf_cache, record.repo, record.path, payload)
    Image.new("RGB", (96, 80), (200, 30, 30)).save(tmp_path / "red.png")
    env = {**os.environ, "PYTHONPATH": str(Path(effnet.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    argv = [
        sys.executable,
        "-m",
        "effnet.cli",
        "predict",
        str(tmp_path / "red.png"),
        "--model",
        "efficientnet_b0.ra_in1k",
        "--pretrained",
        "--json",
        "--top-k",
        "1",
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert row["path"].endswith("red.png") and 0 <= row["top"][0]["index"] < 1000
