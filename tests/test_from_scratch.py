"""benchmarks/from_scratch.py end to end in a tiny configuration: the digits folder, both runs, the ratio."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "from_scratch.py"


def test_from_scratch_trains_effnet_and_timm_on_the_same_folder(tmp_path):
    command = [
        sys.executable,
        str(SCRIPT),
        "--data-dir",
        str(tmp_path),
        "--per-class",
        "6",
        "--val-per-class",
        "2",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    effnet, timm = result["effnet"], result["timm"]
    # Same architecture (parameter count), same epochs, same resolution; timm's lr is its train.py rule.
    assert effnet["params"] == timm["params"] > 600_000
    assert (effnet["epochs"], effnet["image_size"]) == (timm["epochs"], timm["image_size"]) == (1, 32)
    assert timm["lr"] == 0.1 * timm["batch_size"] / 256 and timm["warmup_epochs"] == 0
    for run in (effnet, timm):
        assert 0.0 <= run["top1"] <= 1.0 and run["seconds"] > 0
    if timm["top1"] > 0:
        assert result["ratio"] == effnet["top1"] / timm["top1"]
    # The folder: 10 classes of 48 px PNGs, train and val, the requested counts; reused by the next run.
    folder = Path(result["folder"])
    assert sorted(p.name for p in (folder / "train").iterdir()) == [str(d) for d in range(10)]
    assert [len(list((folder / "val" / str(d)).glob("*.png"))) for d in range(10)] == [2] * 10
    with Image.open(next((folder / "train" / "7").glob("*.png"))) as image:
        assert image.size == (48, 48) and image.mode == "RGB" and np.asarray(image).std() > 3
