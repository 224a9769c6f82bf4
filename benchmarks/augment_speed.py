"""RandAugment / AutoAugment cost per image: effnet's TF-reference ops beside torchvision's and timm's.

Interleaved in one process (rounds of each policy in turn), on skimage's chelsea resized to 224 px, one thread.
Prints ms per image and the ratio to torchvision's RandAugment, plus the CPU flags and the load average.
Run: `PYTHONPATH=src python benchmarks/augment_speed.py [--rounds 5 --images 200]`.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
from PIL import Image
from skimage import data
from torchvision.transforms import v2

from effnet.analysis.cpuinfo import cpu_info
from effnet.data import TFAutoAugment, TFRandAugment


def _cpu() -> str:
    return cpu_info().short()


def _policies() -> dict[str, Callable[[Image.Image], object]]:
    policies: dict[str, Callable[[Image.Image], object]] = {
        "torchvision RandAugment(2, 10/31 bins)": v2.RandAugment(2, 10),
        "effnet TFRandAugment(2, 10)": TFRandAugment(2, 10),
        "torchvision AutoAugment(ImageNet)": v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET),
        "effnet TFAutoAugment(v0)": TFAutoAugment(),
    }
    try:
        from timm.data.auto_augment import auto_augment_transform, rand_augment_transform

        hparams = {"translate_const": 100, "img_mean": (128, 128, 128)}
        policies["timm rand-m10-n2"] = rand_augment_transform("rand-m10-n2", hparams)
        # timm's "v0" itself raises on current Pillow (Posterize level 2 = 0 bits, which ImageOps refuses);
        # "v0r" is timm's same table with posterize levels that stay in range.
        policies["timm v0r"] = auto_augment_transform("v0r", hparams)
    except ImportError:
        pass
    return policies


def main() -> None:
    """Time every policy, interleaved, and print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=200, help="images per policy per round")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    image = Image.fromarray(data.chelsea()).resize((224, 224), Image.Resampling.BICUBIC)
    policies = _policies()
    totals = dict.fromkeys(policies, 0.0)
    for _ in range(args.rounds):
        for name, policy in policies.items():
            start = time.perf_counter()
            for _ in range(args.images):
                policy(image)
            totals[name] += time.perf_counter() - start
    print(f"CPU: {_cpu()}; load average {os.getloadavg()[0]:.1f}; {args.rounds} rounds x {args.images} images")
    base = totals["torchvision RandAugment(2, 10/31 bins)"]
    for name, total in totals.items():
        per_image = 1000 * total / (args.rounds * args.images)
        print(f"{name:40s} {per_image:6.3f} ms/image  x{total / base:.2f}")


if __name__ == "__main__":
    main()
