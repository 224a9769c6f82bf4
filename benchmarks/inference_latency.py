"""Record EfficientNet B0/B1 CPU latency (paper Table 4 protocol) beside torchvision/timm twins and ResNets.

    python benchmarks/inference_latency.py                # time, print, update BENCHMARKS.md
    python benchmarks/inference_latency.py --runs 5 --dry-run

Writes the "Inference latency" section of BENCHMARKS.md (between its marker and the next one), leaving the
other sections alone. Every figure in a table comes from one process, so the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch
from tqdm import tqdm

from effnet._util.cpuinfo import cpu_info
from effnet._util.fileio import write_section
from effnet.analysis.latency import BenchConfig, baseline_ratios, build_candidates, run_benchmark, speedups_over

MARKER = "<!-- section: inference-latency -->"
ROOT = Path(__file__).resolve().parent.parent


def _table(results, ratios, speedups) -> list[str]:
    lines = [
        "| model | backend | res | median ms | p10–p90 ms | img/s | vs torchvision eager | ResNet-152 / this |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        vs = f"{ratios[r.label]:.2f}x" if r.family != "resnet" else "—"
        speed = f"{speedups[r.label]:.1f}x" if r.label in speedups else "—"
        lines.append(
            f"| {r.label} | {r.backend} | {r.resolution} | {r.median_ms:.1f} | {r.p10_ms:.1f}–{r.p90_ms:.1f} "
            f"| {r.images_per_s:.1f} | {vs} | {speed} |"
        )
    return lines


def _cpu_name() -> str:
    return cpu_info().short()


def main(argv: list[str] | None = None) -> int:
    """Time, print and record."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["efficientnet_b0", "efficientnet_b1"])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--throughput-batch", type=int, default=32, help="0 skips the throughput table")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--dry-run", action="store_true", help="print only, do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    command = "python benchmarks/inference_latency.py " + " ".join(argv if argv is not None else sys.argv[1:])
    tables = []
    configs = [("Latency (paper Table 4 protocol)", BenchConfig.paper(args.runs, args.warmup))]
    if args.throughput_batch:
        configs.append(
            (
                "Throughput",
                BenchConfig("throughput", args.throughput_batch, torch.get_num_threads(), 2, max(3, args.runs // 5)),
            )
        )
    for title, config in configs:
        candidates = build_candidates(args.models, optimize=True, resnets=config.mode == "latency")
        with tqdm(total=config.runs, desc=title, file=sys.stderr) as bar:
            results = run_benchmark(candidates, config, lambda _done, _total: bar.update(1))
        header = (
            f"**{title}**: batch {config.batch_size}, {config.threads} thread(s), median of {config.runs} runs "
            f"after {config.warmup} warm-up."
        )
        tables += [header, "", *_table(results, baseline_ratios(results), speedups_over(results)), ""]

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(
        [
            "## Inference latency",
            "",
            f"`{command.strip()}` — {when}, {_cpu_name()}, torch {torch.__version__}; "
            f"1-minute load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after (other jobs",
            "sharing the cores inflate every row; all-thread throughput suffers most from oversubscription).",
            *(
                [
                    "**This run was oversubscribed** (load above the core count): multi-thread eager PyTorch then",
                    "waits on descheduled peer threads, so the throughput table mostly measures that contention.",
                ]
                if max(load_before, os.getloadavg()[0]) > (os.cpu_count() or 1)
                else []
            ),
            "Random weights (speed does not depend on them); the rows of a table are timed in one process, interleaved"
            " (one run of each per round) so background load hits all of them alike.",
            "`--optimize` = BatchNorm folded into the convs, then the fastest measured of channels_last eager and",
            "onnxruntime. Paper Table 4 (one core): ResNet-152 0.554 s vs B1 0.098 s, 5.7x.",
            "",
            *tables,
        ]
    )
    print(body)
    if not args.dry_run:
        write_section(args.out, MARKER, body)
        print(f"\nupdated {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
