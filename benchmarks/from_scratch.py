"""A small image folder trained from scratch: effnet's default recipe beside timm's, same model, same budget.

One command, one run of each, side by side. The folder (made once; reused under --data-dir) holds 10 classes of
small images drawn locally from scikit-learn's handwritten digits (1,797 8x8 scans, no download): each image is a
digit scan upscaled to a random size and position on a random-tone background with clutter lines and pixel noise,
48x48 PNG, so the classes are real handwriting and the nuisances are those of a photo. Train and val draw from
disjoint scans.

- effnet: `fit()` on the folder with what `effnet train --data folder --data-root DIR` runs (the quick recipe:
  docs/training.md), only threads, seed and output folder set.
- timm: the same architecture (timm's `_gen_efficientnet("efficientnet_b0", channel_multiplier, depth_multiplier)`
  at the recipe's width and depth: the same parameter count) trained with the defaults of timm's train.py: SGD
  momentum 0.9, lr 0.1 x batch / 256 (linear for SGD), weight decay 2e-5 (not on BN / biases), batch 128, cosine
  per epoch to 0, warm-up from 1e-5 over 5 of 300 epochs scaled to the run (round(5 x epochs / 300)), label
  smoothing 0.1, timm's train transform (random-resized crop 8-100%, flip, colour jitter 0.4, random
  interpolation) and eval transform (crop 0.875, bicubic), no EMA, no mixup.

Both see the same images for the same number of epochs at the same resolution (the recipe's), one thread each
by default, in two processes at the same time. Prints both val top-1 and effnet / timm.

    python benchmarks/from_scratch.py                        # 3,000 train / 500 val images, the quick recipe
    python benchmarks/from_scratch.py --per-class 20 --epochs 1 --image-size 32 --json   # seconds (the test)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

# timm's train.py defaults (pytorch-image-models, train.py argparse): --opt sgd --momentum 0.9 --weight-decay 2e-5
# --lr-base 0.1 --lr-base-size 256 --sched cosine --warmup-epochs 5 --warmup-lr 1e-5 --min-lr 0 --epochs 300
# --smoothing 0.1 --batch-size 128 --color-jitter 0.4 --scale 0.08 1 --train-interpolation random.
TIMM_DEFAULTS = {
    "opt": "sgd",
    "momentum": 0.9,
    "weight_decay": 2e-5,
    "lr_base": 0.1,
    "lr_base_size": 256,
    "warmup_epochs": 5,
    "warmup_lr": 1e-5,
    "epochs": 300,
    "smoothing": 0.1,
    "batch_size": 128,
}


# ------------------------------------------------------------------------------------------------ the data
def _draw(scan, rng, size: int):
    """One 48 px image: a digit scan (8x8, 0-16) upscaled onto a toned, cluttered, noisy background."""
    import numpy as np
    from PIL import Image, ImageDraw

    side = int(rng.integers(size // 2, size - 4))
    digit = Image.fromarray((scan * 255 / 16).astype(np.uint8)).resize((side, side), Image.Resampling.BILINEAR)
    alpha = np.zeros((size, size), np.float32)
    x, y = rng.integers(0, size - side + 1, size=2)
    alpha[y : y + side, x : x + side] = np.asarray(digit, np.float32) / 255
    back = rng.uniform(0.1, 0.9)
    ink = back + (0.45 if back < 0.5 else -0.45) * rng.uniform(0.7, 1.1)
    tint = rng.uniform(-0.08, 0.08, size=3)
    canvas = Image.fromarray((np.clip(back + tint, 0, 1) * 255 * np.ones((size, size, 3))).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(0, 3))):
        draw.line(list(rng.uniform(0, size, 4)), fill=tuple(int(c) for c in rng.integers(0, 256, 3)), width=1)
    image = np.asarray(canvas, np.float32) / 255
    image = image * (1 - alpha[..., None]) + np.clip(ink + tint, 0, 1) * alpha[..., None]
    image += rng.standard_normal(image.shape) * rng.uniform(0.0, 0.06)
    return Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))


def make_digits_folder(root: Path, per_class: int, val_per_class: int, seed: int = 0, size: int = 48) -> Path:
    """`root`/digits-.../{train,val}/<digit>/*.png; train and val come from disjoint scans; reused when made."""
    import numpy as np
    from sklearn.datasets import load_digits

    folder = root / f"digits-{per_class}-{val_per_class}-{seed}-{size}"
    if (folder / "done").is_file():
        return folder
    digits = load_digits()
    rng = np.random.default_rng(seed)
    for label in range(10):
        scans = digits.images[digits.target == label]
        order = rng.permutation(len(scans))
        cut = len(scans) * 4 // 5  # 80% of the scans for training, the rest for validation
        for split, pool, count in (("train", order[:cut], per_class), ("val", order[cut:], val_per_class)):
            (folder / split / str(label)).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                image = _draw(scans[pool[index % len(pool)]], rng, size)
                image.save(folder / split / str(label) / f"{index:05d}.png")
    (folder / "done").write_text("")  # last: an interrupted run is made again
    return folder


# ------------------------------------------------------------------------------------------------ the runs
def run_effnet(folder: Path, args: argparse.Namespace, out: Path) -> dict:
    """What `effnet train --data folder --data-root FOLDER` runs (only threads, seed, outputs and the budget)."""
    from effnet.train import fit
    from effnet.train.config import TrainConfig

    config = TrainConfig.resolve(
        recipe="quick",
        data={"name": "folder", "root": str(folder)},
        **_budget(args),
        threads=args.threads,
        seed=args.seed,
        output_dir=str(out),
        run_name="effnet",
        tensorboard=False,
        plot=False,
    )
    start = time.perf_counter()
    result = fit(config, progress=False, bar=False)
    return {
        "top1": result.final_val_acc,
        "seconds": time.perf_counter() - start,
        "params": result.num_params,
        "epochs": config.epochs,
        "image_size": config.image_size,
        "batch_size": config.batch_size,
    }


def run_timm(folder: Path, args: argparse.Namespace, epochs: int, size: int) -> dict:
    """The same architecture with timm's train.py defaults, at the same epochs and resolution."""
    import torch
    from timm.data import ImageDataset, create_transform
    from timm.loss import LabelSmoothingCrossEntropy
    from timm.models.efficientnet import _gen_efficientnet
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    from effnet.train.config import RECIPES

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    quick = RECIPES["quick"]
    model = _gen_efficientnet(
        "efficientnet_b0", channel_multiplier=quick["width"], depth_multiplier=quick["depth"], num_classes=10
    )
    batch = min(TIMM_DEFAULTS["batch_size"], args.per_class * 10)
    train = ImageDataset(
        str(folder / "train"), transform=create_transform(size, is_training=True, interpolation="random")
    )
    val = ImageDataset(str(folder / "val"), transform=create_transform(size, crop_pct=0.875, interpolation="bicubic"))
    loader = torch.utils.data.DataLoader(train, batch_size=batch, shuffle=True, drop_last=True)
    lr = TIMM_DEFAULTS["lr_base"] * batch / TIMM_DEFAULTS["lr_base_size"]
    optimizer = create_optimizer_v2(
        model, opt="sgd", lr=lr, weight_decay=TIMM_DEFAULTS["weight_decay"], momentum=TIMM_DEFAULTS["momentum"]
    )
    warmup = round(TIMM_DEFAULTS["warmup_epochs"] * epochs / TIMM_DEFAULTS["epochs"])
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched="cosine",
        num_epochs=epochs,
        warmup_epochs=warmup,
        warmup_lr=TIMM_DEFAULTS["warmup_lr"],
        min_lr=0.0,
    )
    loss_fn = LabelSmoothingCrossEntropy(TIMM_DEFAULTS["smoothing"])
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        for images, labels in loader:
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step(epoch + 1)
    model.eval()
    correct = 0
    with torch.no_grad():
        for images, labels in torch.utils.data.DataLoader(val, batch_size=100):
            correct += int((model(images).argmax(1) == labels).sum())
    return {
        "top1": correct / len(val),
        "seconds": time.perf_counter() - start,
        "params": sum(p.numel() for p in model.parameters()),
        "epochs": epochs,
        "image_size": size,
        "batch_size": batch,
        "lr": lr,
        "warmup_epochs": warmup,
    }


def _budget(args: argparse.Namespace) -> dict:
    return {key: value for key, value in (("epochs", args.epochs), ("image_size", args.image_size)) if value}


def quick_budget(args: argparse.Namespace) -> tuple[int, int]:
    """Epochs and resolution of the effnet run (the quick recipe's unless --epochs / --image-size)."""
    from effnet.train.config import TrainConfig

    config = TrainConfig.from_recipe("quick", **_budget(args))
    assert config.image_size is not None  # the quick recipe names its resolution
    return config.epochs, config.image_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "effnet-from-scratch",
        help="where the image folder is made (once) and reused",
    )
    parser.add_argument("--per-class", type=int, default=300, help="training images per class")
    parser.add_argument("--val-per-class", type=int, default=50, help="validation images per class")
    parser.add_argument("--epochs", type=int, help="both runs (default: the quick recipe's)")
    parser.add_argument("--image-size", type=int, help="both runs (default: the quick recipe's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for each run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    folder = make_digits_folder(args.data_dir, args.per_class, args.val_per_class, args.seed)
    epochs, size = quick_budget(args)
    # Side by side: each run in its own process with its own threads, at the same time (same load for both).
    with tempfile.TemporaryDirectory() as out, ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        effnet_job = pool.submit(run_effnet, folder, args, Path(out))
        timm_job = pool.submit(run_timm, folder, args, epochs, size)
        effnet, timm_run = effnet_job.result(), timm_job.result()
    ratio = effnet["top1"] / timm_run["top1"] if timm_run["top1"] > 0 else math.inf
    result = {
        "folder": str(folder),
        "train_images": args.per_class * 10,
        "val_images": args.val_per_class * 10,
        "effnet": effnet,
        "timm": timm_run,
        "ratio": ratio,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['train_images']} train / {result['val_images']} val images, {effnet['epochs']} epochs at "
        f"{effnet['image_size']} px, {effnet['params']:,} parameters each, {args.threads} thread(s)"
    )
    print(f"effnet quick recipe : top-1 {effnet['top1']:.4f}  ({effnet['seconds']:.0f} s)")
    print(f"timm train.py recipe: top-1 {timm_run['top1']:.4f}  ({timm_run['seconds']:.0f} s)")
    print(f"effnet / timm: {ratio:.3f}")


if __name__ == "__main__":
    main()
