"""JPEG draft decoding (libjpeg DCT scaling through PIL's draft mode) for the CPU training / eval transforms.

For each setting: ms per image of load + transform with full decoding and with `load_rgb(min_side=...)`, rounds
interleaved on the same files, and the pixel difference the draft makes on the whole image resized to the
output size (bicubic, antialiased; levels of 255). One thread; prints the CPU and the load average.
Run: `PYTHONPATH=src python benchmarks/draft_decode.py [--root /work/shared/data/cats_vs_dogs/train --images 300]`.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from effnet._util.cpuinfo import cpu_info
from effnet.data import eval_transform, load_rgb, train_transform
from effnet.data.folder import crop_draft_side, eval_draft_side

# name: (transform, the shorter side a draft must keep)
SETTINGS: dict[str, tuple[Callable[[Image.Image], object], int]] = {
    "train 64 px, crops 80-100% (quick recipe)": (train_transform(64, scale=(0.8, 1.0), augment=None),
                                                  crop_draft_side(64, 0.8)),
    "train 224 px, crops 35-100% (finetune recipe)": (train_transform(224, scale=(0.35, 1.0), augment=None),
                                                      crop_draft_side(224, 0.35)),
    "train 224 px, crops 8-100% (paper recipe)": (train_transform(224, augment=None), crop_draft_side(224, 0.08)),
    "eval 64 px, whole image (quick recipe)": (eval_transform(64, 1.0), eval_draft_side(64)),
    "eval 224 px, crop 0.875": (eval_transform(224, 0.875), eval_draft_side(256)),
}  # fmt: skip


def _timed(files: list[Path], transform: Callable[[Image.Image], object], min_side: int | None) -> float:
    start = time.perf_counter()
    for index, path in enumerate(files):
        torch.manual_seed(index)
        transform(load_rgb(path, min_side))
    return time.perf_counter() - start


def _difference(files: list[Path], size: int, min_side: int) -> tuple[float, float, float]:
    """(share of images drafted, mean |diff| in levels, 99.9th percentile |diff|) of the whole image at size."""
    drafted, diffs = 0, []
    for path in files:
        full, draft = load_rgb(path), load_rgb(path, min_side)
        drafted += draft.size != full.size
        a = np.asarray(full.resize((size, size), Image.Resampling.BICUBIC), dtype=np.int16)
        b = np.asarray(draft.resize((size, size), Image.Resampling.BICUBIC), dtype=np.int16)
        diffs.append(np.abs(a - b).ravel())
    every = np.concatenate(diffs)
    return drafted / len(files), float(every.mean()), float(np.percentile(every, 99.9))


def main() -> None:
    """Time every setting with and without draft decoding, interleaved, and print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=Path("/work/shared/data/cats_vs_dogs/train"))
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = sorted(p for p in args.root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))[: args.images]
    load_before = os.getloadavg()[0]
    print(f"CPU: {cpu_info().short()}; {len(files)} JPEGs from {args.root}; {args.rounds} rounds interleaved")
    for name, (transform, min_side) in SETTINGS.items():
        size = int(name.split(" ")[1])
        totals = {"full": 0.0, "draft": 0.0}
        for _ in range(args.rounds):
            totals["full"] += _timed(files, transform, None)
            totals["draft"] += _timed(files, transform, min_side)
        full, draft = (1000 * totals[k] / (args.rounds * len(files)) for k in ("full", "draft"))
        share, mean, tail = _difference(files, size, min_side)
        print(
            f"{name:48s} full {full:6.2f} ms  draft {draft:6.2f} ms  x{full / draft:4.2f}  drafted {share:4.0%}  "
            f"|diff| mean {mean:.2f}, 99.9% {tail:.0f} levels (min side {min_side})"
        )
    print(f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
