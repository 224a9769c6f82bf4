"""Learnability probe of the procedural dataset: a tiny CNN trained at several resolutions on the same images.

    python benchmarks/shapes_probe.py --sizes 32,64 --num-train 3000 --epochs 8

Each image is rendered once at 128 px and shrunk (bicubic, antialiased) to each size, so the only thing that
changes between rows is resolution. "coarse acc" counts a prediction right when its outline (the coarse part) is right:
it stays high at every size, while the full 10-way accuracy needs the fine stripes, i.e. resolution.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from effnet.data.procedural import CLASS_NAMES, FILLS, render_sample


@dataclass(frozen=True)
class ProbeResult:
    """Accuracy of one probe run."""

    size: int
    val_acc: float
    coarse_acc: float
    train_acc: float
    seconds: float


def render_tensor(num: int, seed: int, split: str, render_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [N, 3, S, S] and labels [N] of the procedural set."""
    images = np.empty((num, render_size, render_size, 3), dtype=np.uint8)
    labels = np.empty(num, dtype=np.int64)
    for index in range(num):
        image, labels[index] = render_sample(seed, split, index, render_size)
        images[index] = np.asarray(image)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


def _shrink(images: torch.Tensor, size: int) -> torch.Tensor:
    out = [
        F.interpolate(chunk.float() / 255, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        for chunk in images.split(256)
    ]
    return (torch.cat(out).clamp(0, 1) - 0.5) / 0.25


def tiny_cnn(width: int, num_classes: int) -> nn.Sequential:
    """Six 3x3 conv-BN-ReLU layers (a stride-2 stem like EfficientNet's, then stride 2 twice more), global
    average pooling and a linear classifier: works at any input size."""
    layers: list[nn.Module] = []
    channels = [3, width, width, 2 * width, 2 * width, 4 * width, 4 * width]
    for i in range(6):
        stride = 2 if i % 2 == 0 else 1
        layers += [nn.Conv2d(channels[i], channels[i + 1], 3, stride, 1, bias=False)]
        layers += [nn.BatchNorm2d(channels[i + 1]), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes))


def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(chunk).argmax(1) for chunk in images.split(256)])
    fine = (predicted == labels).float().mean().item()
    coarse = (predicted // len(FILLS) == labels // len(FILLS)).float().mean().item()
    return fine, coarse


def probe_size(data: tuple[torch.Tensor, ...], size: int, epochs: int, width: int, seed: int) -> ProbeResult:
    """Train the tiny CNN at one resolution (Adam 1e-3, batch 50, horizontal flips) and measure it."""
    train_images, train_labels, val_images, val_labels = data
    x_train, x_val = _shrink(train_images, size), _shrink(val_images, size)
    torch.manual_seed(seed)
    model = tiny_cnn(width, int(train_labels.max()) + 1)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x_train))
        for batch in order.split(50):
            x = x_train[batch]
            flip = torch.rand(len(batch)) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = F.cross_entropy(model(x), train_labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    val_acc, coarse_acc = _accuracy(model, x_val, val_labels)
    train_acc, _ = _accuracy(model, x_train[:1000], train_labels[:1000])
    return ProbeResult(size, val_acc, coarse_acc, train_acc, seconds)


def main(argv: list[str] | None = None) -> None:
    """Command line: print one line per resolution."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="32,64", help="comma-separated input resolutions")
    parser.add_argument("--num-train", type=int, default=3000)
    parser.add_argument("--num-val", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = (*render_tensor(args.num_train, args.seed, "train"), *render_tensor(args.num_val, args.seed, "val"))
    rendered = args.num_train + args.num_val
    classes = len(CLASS_NAMES)
    print(f"rendered {rendered} images at 128 px in {time.perf_counter() - start:.1f}s; "
          f"chance = 1/{classes} = {1 / classes:.3f}")
    for size in (int(s) for s in args.sizes.split(",")):
        result = probe_size(data, size, args.epochs, args.width, args.seed)
        print(
            f"{size:4d} px: val acc {result.val_acc:.3f}  coarse acc {result.coarse_acc:.3f}  "
            f"train acc {result.train_acc:.3f}  ({result.seconds:.0f}s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
