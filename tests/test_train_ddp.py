"""DDP on CPU: 2 gloo processes on loopback (one node, or two nodes) with SyncBatchNorm equal 1 process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from effnet.models.specs import NetSpec, StageSpec
from effnet.train import load_checkpoint


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tiny_spec() -> NetSpec:
    return NetSpec(
        "tiny",
        (StageSpec("mbconv", 1, 3, 1, 8, 1, 0.25), StageSpec("mbconv", 4, 3, 2, 16, 1, 0.25),
         StageSpec("fused", 4, 3, 2, 24, 2)),
        stem_channels=8, head_channels=64, resolution=32,
    )


def _launch_two_processes(common: list[str], env: dict[str, str], nodes: int) -> None:
    """torchrun with 2 processes: one node running both, or two single-process nodes meeting on loopback."""
    port = str(_free_port())
    if nodes == 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                    "127.0.0.1", "--master_port", port, "-m", "effnet.cli"]
        subprocess.run([*launcher, *common], check=True, env=env, timeout=300)
        return
    launchers = [
        subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(rank),
                          "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", port,
                          "-m", "effnet.cli", *common], env=env)
        for rank in range(2)
    ]
    try:
        codes = [launcher.wait(timeout=300) for launcher in launchers]
    finally:
        for launcher in launchers:
            launcher.kill()
    assert codes == [0, 0]


@pytest.mark.slow
@pytest.mark.parametrize("nodes", [1, 2], ids=["one-node", "two-nodes"])
def test_two_processes_with_syncbn_match_one_process_with_the_same_global_batch(tmp_path, nodes):
    spec_path = _tiny_spec().save(tmp_path / "tiny.json")
    # No dropout / drop path / mixup: the only randomness left is the (seeded, per-sample) augmentation.
    common = ["train", "--model", str(spec_path), "--epochs", "2", "--batch-size", "32", "--num-train", "96",
              "--num-val", "32", "--image-size", "32", "--dropout", "0", "--drop-path-rate", "0", "--ema-decay", "0",
              "--sync-bn", "--deterministic", "--no-tensorboard", "--no-plot", "--quiet",
              "--output-dir", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "effnet.cli", *common, "--run-name", "one"], check=True, env=env,
                   timeout=300)
    _launch_two_processes([*common, "--run-name", "two"], env, nodes)

    rows = {name: [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
            for name in ("one", "two")}
    assert len(rows["one"]) == len(rows["two"]) == 2
    for single, double in zip(rows["one"], rows["two"], strict=True):
        assert double["global_step"] == single["global_step"] == 3 * single["epoch"]
        for key in ("train_loss", "val_loss"):
            # Equal up to float rounding (~1e-7); per-process BatchNorm statistics would differ by ~5e-4.
            assert double[key] == pytest.approx(single[key], rel=1e-4), key
        for key in ("train_acc", "val_acc"):
            assert double[key] == pytest.approx(single[key], abs=1.5 / 32), key
    # Only rank 0 wrote: one header line in the log, and the checkpoint holds both ranks' RNG states.
    log = (tmp_path / "two" / "train.log").read_text()
    assert log.count("run folder") == 1 and "2 process(es)" in log
    assert len(load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")["rng"]) == 2
