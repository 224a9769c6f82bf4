"""benchmarks/train_speed.py end to end in a tiny CPU configuration: JPEG folder, candidates, the markdown table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_speed.py"


def test_train_speed_runs_end_to_end_on_cpu(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for index, colour in enumerate(("red", "green", "blue")):
        Image.new("RGB", (160 + 40 * index, 120), colour).save(photos / f"{index}.jpg")
    table = tmp_path / "speed.md"
    command = [
        sys.executable,
        str(SCRIPT),
        "--small",
        "--source",
        str(photos),
        "--data-dir",
        str(tmp_path / "data"),
        "--files",
        "16",
        "--classes",
        "2",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--rounds",
        "1",
        "--models",
        "efficientnet_b0:32:4",
        "--device",
        "cpu",
        "--out",
        str(table),
        "--json",
        "--candidates",
        "effnet defaults (auto)",
        "timm loader + prefetcher (same model/step)",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    assert [row["candidate"] for row in rows] == [
        "effnet defaults (auto)",
        "timm loader + prefetcher (same model/step)",
    ]
    for row in rows:
        assert row["img_per_s"] > 0 and row["ceiling_img_per_s"] > 0 and row["busy_pct"] is None
        assert row["peak_mb"] > 0 and row["cpu_cores"] > 0 and "cl on" in row["settings"]
    text = table.read_text()
    assert "| efficientnet_b0 32px b4 | effnet defaults (auto) |" in text and "1.00x" in text
    assert "NVIDIA DeepLearningExamples, 1x A100 80GB, AMP" in text and "2,489" in text
    # The JPEG folder: real files at ImageNet's sizes, reused by the next run (cached under --data-dir).
    (folder,) = (tmp_path / "data").iterdir()
    files = sorted((folder / "train").rglob("*.jpg"))
    assert len(files) == 16 and len(list((folder / "train").iterdir())) == 2
    with Image.open(files[0]) as image:
        assert image.format == "JPEG" and 300 <= min(image.size) <= 500
