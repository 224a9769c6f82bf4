"""Progressive learning (EfficientNetV2) against fixed-size training: same model, data and epoch budget.

The V2 claim: growing the image size (with regularization) over the run trains faster at equal accuracy. Each
seed trains the model twice through `effnet.train.fit`: once at the final size throughout ("fixed") and once
with progressive learning over `--stages` stages ending at that size ("progressive"), evaluated at the final
size both times. Arms alternate within one process (fixed, progressive, fixed, ...) so background load hits both
alike. Reported per arm: wall time, CPU time of this process (robust to other jobs on a shared machine; with
--num-workers > 0 it leaves out the DataLoader workers' time) and the final val top-1, as mean +- sample sd
over the seeds; the verdict checks ">= 30% less wall time at accuracy within one sd of fixed-size training".

    python benchmarks/progressive.py                                   # CPU, quick recipe proxy at 64 px
    python benchmarks/progressive.py --device cuda --num-workers 8 --image-size 128 --render-size 128 \\
        --num-train 10000 --epochs 12 --out progressive_gpu.json       # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from effnet._util.cpuinfo import cpu_info
from effnet._util.fileio import write_text_atomic
from effnet.data import DataConfig
from effnet.train import TrainConfig, fit
from effnet.train.progressive import PROGRESSIVE_SCHEDULES

ARMS = ("fixed", "progressive")


def machine_info(device: str) -> dict[str, Any]:
    """CPU model and flags, core count, load average, torch version and the GPU, for the record."""
    cpu = cpu_info()
    info = {"cpu": cpu.model, "cpu_isa": cpu.supported(), "cores": cpu.cores,
            "load_avg": list(os.getloadavg()), "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def arm_config(args: argparse.Namespace, arm: str, seed: int, out: Path) -> TrainConfig:
    """The quick recipe at the final size; the progressive arm adds the stage schedule."""
    return TrainConfig.from_recipe(
        "quick", model=args.model, width=args.width, depth=args.depth, image_size=args.image_size,
        epochs=args.epochs, batch_size=args.batch_size, seed=seed, device=args.device,
        num_workers=args.num_workers, threads=args.threads,
        data=DataConfig(name="shapes", num_train=args.num_train, num_val=args.num_val, seed=0,
                        render_size=args.render_size),
        progressive=arm == "progressive", progressive_schedule=args.schedule, progressive_stages=args.stages,
        output_dir=str(out), run_name=f"{arm}-seed{seed}", tensorboard=False, plot=False, keep_last=1,
    )


def _stages(config: TrainConfig) -> list[Any]:
    """The stage list the run will use (the training path's own resolution of the schedule)."""
    import effnet
    from effnet.train.setup import _stages as stages_of

    spec = effnet.scale(effnet.get_spec(config.model), width=config.width, depth=config.depth)
    return stages_of(config, spec, config.image_size or spec.resolution)


def run_arm(config: TrainConfig) -> dict[str, Any]:
    """Train once; wall and CPU seconds around the whole `fit` (data, training, evaluation)."""
    if config.device.startswith("cuda"):
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fit(config, progress=False)
    if config.device.startswith("cuda"):
        torch.cuda.synchronize()
    return {
        "wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(time.process_time() - cpu, 2),
        "val_acc": result.final_val_acc, "best_val_acc": result.best_val_acc,
        "sizes": [row.get("image_size") for row in result.history],
        "epoch_wall_s": [row.get("epoch_time_s") for row in result.history],
    }


def cost_by_size(args: argparse.Namespace, sizes: list[int], steps: int = 4) -> list[dict[str, Any]]:
    """Why the saving is what it is: per image at each stage size, the model's multiply-adds and the CPU time of
    a training step (forward, backward, AdamW) and of preparing the image (render + crop + resize)."""
    import effnet
    from effnet.data import build_datasets, train_transform
    from effnet.models.complexity import count_macs

    spec = effnet.scale(effnet.get_spec(args.model), width=args.width, depth=args.depth, depth_rounding="round")
    device = torch.device(args.device)
    model = effnet.create_model(spec, num_classes=10).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = build_datasets(DataConfig(name="shapes", num_train=4 * args.batch_size, num_val=1,
                                     render_size=args.render_size))
    data.train.transform = train_transform(sizes[0], scale=(0.8, 1.0), augment=None)
    data.train[0]  # warm-up: the first image pays for lazy imports and caches
    rows = []
    for size in sizes:
        data.train.transform = train_transform(size, scale=(0.8, 1.0), augment=None)
        started = time.process_time()
        images = torch.stack([data.train[i][0] for i in range(args.batch_size)])
        data_ms = 1000 * (time.process_time() - started) / args.batch_size
        images, labels = images.to(device), torch.randint(0, 10, (args.batch_size,), device=device)
        for index in range(steps + 1):
            if index == 1:  # the first step warms up allocators and kernels
                if device.type == "cuda":
                    torch.cuda.synchronize()
                started, wall = time.process_time(), time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        rows.append({"size": size, "macs": count_macs(spec, size, num_classes=10), "data_cpu_ms": round(data_ms, 3),
                     "step_cpu_ms": round(1000 * (time.process_time() - started) / (steps * args.batch_size), 3),
                     "step_wall_ms": round(1000 * (time.perf_counter() - wall) / (steps * args.batch_size), 3)})
    return rows


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample sd per arm, and the verdict on the V2 claim."""
    summary: dict[str, Any] = {}
    for arm in ARMS:
        mine = [run for run in runs if run["arm"] == arm]
        summary[arm] = {}
        for key in ("wall_s", "cpu_s", "val_acc"):
            values = [run[key] for run in mine]
            sd = statistics.stdev(values) if len(values) > 1 else None
            summary[arm][key] = {"mean": statistics.mean(values), "sd": sd}
    fixed, prog = summary["fixed"], summary["progressive"]
    wall_saving = 1 - prog["wall_s"]["mean"] / fixed["wall_s"]["mean"]
    cpu_saving = 1 - prog["cpu_s"]["mean"] / fixed["cpu_s"]["mean"]
    gap = prog["val_acc"]["mean"] - fixed["val_acc"]["mean"]
    within = fixed["val_acc"]["sd"] is not None and gap >= -fixed["val_acc"]["sd"]
    summary["wall_saving"], summary["cpu_saving"], summary["acc_gap"] = wall_saving, cpu_saving, gap
    summary["claim_met"] = bool(wall_saving >= 0.30 and within)
    return summary


def _fmt(stat: dict[str, Any], scale: float = 1.0, digits: int = 1) -> str:
    sd = "" if stat["sd"] is None else f" +- {scale * stat['sd']:.{digits}f}"
    return f"{scale * stat['mean']:.{digits}f}{sd}"


def main(argv: list[str] | None = None) -> int:
    """Run the comparison, print a table and write the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (passed to the training path)")
    parser.add_argument("--model", default="efficientnet_b0")
    parser.add_argument("--width", type=float, default=0.5, help="width multiplier (quick recipe: 0.5)")
    parser.add_argument("--depth", type=float, default=0.5, help="depth multiplier (quick recipe: 0.5)")
    parser.add_argument("--image-size", type=int, default=64, help="final (and fixed-arm) training size")
    parser.add_argument("--render-size", type=int, default=64, help="pixels the built-in shapes are drawn at")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--stages", type=int, default=4)
    parser.add_argument("--schedule", choices=PROGRESSIVE_SCHEDULES, default="paper")
    parser.add_argument("--num-train", type=int, default=1000)
    parser.add_argument("--num-val", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (use several on a GPU)")
    parser.add_argument("--out", type=Path, default=Path("progressive.json"), help="JSON result file")
    parser.add_argument("--cost-only", action="store_true", help="only the per-size cost table (no training)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info(args.device)
    print(json.dumps(info))
    print(f"{args.model} x{args.width}/{args.depth}, {args.epochs} epochs of {args.num_train} shapes at "
          f"{args.image_size}px (render {args.render_size}px), {args.stages} stages ({args.schedule}), "
          f"seeds {args.seeds}, device {args.device}", flush=True)
    stage_sizes = sorted({s.image_size for s in _stages(arm_config(args, "progressive", 0, Path(".")))})
    costs = cost_by_size(args, stage_sizes)
    final = costs[-1]
    for row in costs:
        print(f"{row['size']:4d}px: multiply-adds x{row['macs'] / final['macs']:.2f} of the final size, train step "
              f"{row['step_cpu_ms']:.2f} ms CPU/image (x{row['step_cpu_ms'] / final['step_cpu_ms']:.2f}), data "
              f"{row['data_cpu_ms']:.2f} ms CPU/image", flush=True)
    if args.cost_only:
        write_text_atomic(args.out, json.dumps({"machine": info, "cost_by_size": costs}, indent=2) + "\n")
        return 0
    runs = []
    with tempfile.TemporaryDirectory(prefix="effnet-progressive-") as folder:
        for seed in args.seeds:
            for arm in ARMS:
                record = {"arm": arm, "seed": seed, **run_arm(arm_config(args, arm, seed, Path(folder)))}
                runs.append(record)
                print(f"{arm:>11} seed {seed}: {record['wall_s']:7.1f}s wall, {record['cpu_s']:7.1f}s CPU, "
                      f"val top-1 {100 * record['val_acc']:.1f}%, sizes {record['sizes']}", flush=True)
    summary = summarize(runs)
    for arm in ARMS:
        stats = summary[arm]
        print(f"{arm:>11}: wall {_fmt(stats['wall_s'])} s, CPU {_fmt(stats['cpu_s'])} s, "
              f"val top-1 {_fmt(stats['val_acc'], 100)}%")
    print(f"progressive saves {100 * summary['wall_saving']:.1f}% wall time ({100 * summary['cpu_saving']:.1f}% CPU "
          f"time), accuracy {100 * summary['acc_gap']:+.1f} points; claim (>= 30% less wall time, accuracy within "
          f"one sd of fixed) {'MET' if summary['claim_met'] else 'NOT met'}")
    info["load_avg_end"] = list(os.getloadavg())
    record = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "machine": info, "runs": runs, "summary": summary, "cost_by_size": costs, "command": " ".join(sys.argv)}
    write_text_atomic(args.out, json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
