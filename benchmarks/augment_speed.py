"""RandAugment / AutoAugment cost per image: effnet's TF-reference ops beside torchvision's and timm's.

Interleaved in one process (rounds of each policy in turn), on skimage's chelsea resized to 224 px, one thread.
Prints ms per image and the ratio to torchvision's RandAugment, plus the CPU flags and the load average.
With `--batched cpu` (or `cuda`), also the GPU input pipeline's batched twins (effnet.data.gpu) per image on that
device beside the CPU path per image: the policies on a uint8 batch at 224 px, and the whole training transform
(decode + RandomResizedCrop + flip + RandAugment + normalize) from JPEG bytes of photos of different sizes.
With `--against REV [REV ...]`, instead: effnet.data.autoaugment as it was at each git revision beside the
working tree's, per op (apply_op at magnitudes 9 and 10) and per policy (RandAugment(2, 9), (2, 10), AutoAugment
v0), on centre crops of real photos (`--photos`, default the cats_vs_dogs set) at 224 and 64 px; the versions run
in turn within each round (same load, same random draws), and medians over the rounds are reported.
Run: `PYTHONPATH=src python benchmarks/augment_speed.py [--rounds 5 --images 200 --batched cpu --batch 64]`, or
`PYTHONPATH=src python benchmarks/augment_speed.py --against 85eda28 --rounds 7 --images 32`.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from PIL import Image
from skimage import data
from torchvision.transforms import v2

import effnet.data.autoaugment as current_autoaugment
from effnet._util.cpuinfo import cpu_info
from effnet.data import TFAutoAugment, TFRandAugment, train_transform
from effnet.data.folder import EncodedImage, load_rgb
from effnet.data.gpu import BatchedAutoAugment, BatchedRandAugment, BatchTrainTransform, decode_batch


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


def _photos(count: int) -> list[bytes]:
    """JPEG files of different sizes (skimage's photos, 300-512 px sides), as a loader's workers would read them."""
    sources = [data.chelsea(), data.astronaut(), data.coffee(), data.rocket()]
    out = []
    for index in range(count):
        image = Image.fromarray(sources[index % len(sources)])
        side = 300 + (index * 37) % 212
        image = image.resize((side, int(side * image.height / image.width)), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batched_rows(device: torch.device, batch: int, rounds: int) -> dict[str, tuple[float, float]]:
    """name: (CPU path ms / image, batched ms / image on `device`), interleaved round by round."""
    photos = _photos(batch)
    encoded = [EncodedImage(torch.frombuffer(bytearray(raw), dtype=torch.uint8)) for raw in photos]
    square = Image.fromarray(data.chelsea()).resize((224, 224), Image.Resampling.BICUBIC)
    square_batch = torch.from_numpy(np.array(square)).permute(2, 0, 1).repeat(batch, 1, 1, 1).to(device)
    cpu_train = train_transform(224, augment="randaugment")
    pairs: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "RandAugment(2, 10) at 224 px": (lambda: [TFRandAugment(2, 10)(square) for _ in range(batch)],
                                         lambda: BatchedRandAugment(2, 10)(square_batch)),
        "AutoAugment v0 at 224 px": (lambda: [TFAutoAugment()(square) for _ in range(batch)],
                                     lambda: BatchedAutoAugment()(square_batch)),
        "decode + train transform (RandAugment) from JPEG": (
            lambda: [cpu_train(load_rgb(io.BytesIO(raw))) for raw in photos],
            lambda: BatchTrainTransform(224, augment="randaugment")(
                [image for image in decode_batch(encoded, device) if image is not None]),
        ),
    }  # fmt: skip
    totals = {name: [0.0, 0.0] for name in pairs}
    for _, batched_once in pairs.values():  # warm-up (CUDA kernels, allocator)
        batched_once()
    for _ in range(rounds):
        for name, (cpu_path, batched) in pairs.items():
            for slot, run in enumerate((cpu_path, batched)):
                _sync(device)
                start = time.perf_counter()
                run()
                _sync(device)
                totals[name][slot] += time.perf_counter() - start
    return {name: (1000 * a / (rounds * batch), 1000 * b / (rounds * batch)) for name, (a, b) in totals.items()}


def _module_at(rev: str) -> ModuleType:
    """effnet.data.autoaugment as it was at git revision `rev`, imported as its own module."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{rev}:src/effnet/data/autoaugment.py"], cwd=root, check=True, capture_output=True, text=True
    ).stdout
    name = f"autoaugment_at_{rev}"
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    sys.modules[name] = module  # dataclasses look their module up while the class body runs
    exec(compile(source, f"{rev}:autoaugment.py", "exec"), module.__dict__)
    return module


def _crops(folder: Path, count: int, size: int) -> list[Image.Image]:
    """Centre crops of the first `count` photos under `folder`, resized to `size` px (a training crop's size)."""
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]
    if not paths:
        raise SystemExit(f"no photos under {folder}; pass --photos DIR")
    out = []
    for path in paths:
        image = Image.open(path).convert("RGB")
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        out.append(image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR))
    return out


def _version_jobs(module: ModuleType, images: list[Image.Image]) -> dict[str, Callable[[], object]]:
    """Row name: a call that runs that op (or policy) of `module` once over `images`."""
    jobs: dict[str, Callable[[], object]] = {}
    for magnitude in (10, 9):
        for name in module.RANDAUGMENT_OPS:
            arg = module.level_to_arg(name, magnitude, module.RANDAUGMENT_CONSTANTS)
            jobs[f"{name} M={magnitude}"] = lambda n=name, a=arg: [module.apply_op(i, n, a) for i in images]
    for label, policy in (
        ("RandAugment(2, 9)", module.TFRandAugment(2, 9)),
        ("RandAugment(2, 10)", module.TFRandAugment(2, 10)),
        ("AutoAugment v0", module.TFAutoAugment()),
    ):
        jobs[label] = lambda p=policy: [p(i) for i in images]
    return jobs


def _against(revs: list[str], folder: Path, rounds: int, count: int) -> None:
    """Per-op and per-policy ms / image of autoaugment at each revision and in the working tree, interleaved."""
    versions = {rev: _module_at(rev) for rev in revs} | {"tree": current_autoaugment}
    print(f"CPU: {_cpu()}; load average {os.getloadavg()[0]:.1f}; {rounds} rounds x {count} images; {folder}")
    for size in (224, 64):
        images = _crops(folder, count, size)
        jobs = {label: _version_jobs(module, images) for label, module in versions.items()}
        times: dict[str, dict[str, list[float]]] = {row: {v: [] for v in versions} for row in jobs["tree"]}
        for index in range(rounds):
            order = list(versions)[index % len(versions) :] + list(versions)[: index % len(versions)]
            for row in times:
                for label in order:  # same seed for every version: the same ops drawn, the same Cutout boxes
                    torch.manual_seed(index)
                    start = time.perf_counter()
                    jobs[label][row]()
                    times[row][label].append(1000 * (time.perf_counter() - start) / len(images))
        header = "  ".join(f"{label:>9s}" for label in versions)
        print(f"\n{size} px, median ms / image: {'op':22s} {header}  tree / each revision")
        for row, per_version in times.items():
            medians = {label: statistics.median(values) for label, values in per_version.items()}
            ratios = "  ".join(f"x{medians['tree'] / medians[rev]:.2f}" for rev in revs)
            cells = "  ".join(f"{medians[label]:9.3f}" for label in versions)
            print(f"{'':29s}{row:22s} {cells}  {ratios}")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


def main() -> None:
    """Time every policy, interleaved, and print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=200, help="images per policy per round")
    parser.add_argument("--batched", choices=("cpu", "cuda"), help="also time effnet.data.gpu on this device")
    parser.add_argument("--batch", type=int, default=64, help="batch size for --batched")
    parser.add_argument("--against", nargs="+", metavar="REV", help="compare autoaugment.py at these git revisions")
    parser.add_argument("--photos", type=Path, default=Path("/work/shared/data/cats_vs_dogs"), help="for --against")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.against:
        _against(args.against, args.photos, args.rounds, args.images)
        return
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
    if args.batched:
        device = torch.device(args.batched)
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else "the CPU, one thread"
        print(f"\nbatched (effnet.data.gpu) on {where}, batch {args.batch}, beside the CPU path per image:")
        for name, (cpu_ms, batched_ms) in _batched_rows(device, args.batch, args.rounds).items():
            print(
                f"{name:50s} CPU path {cpu_ms:7.3f} ms/image  batched {batched_ms:7.3f} ms/image  "
                f"x{cpu_ms / batched_ms:.2f}"
            )
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
