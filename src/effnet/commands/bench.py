"""`effnet bench`: CPU latency (the paper's Table 4 protocol) or throughput, beside twins and ResNets."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from effnet._util.validation import image_side, thread_count, whole_number
from effnet.commands._flags import add_output_flags

NAME = "bench"
HELP = "CPU latency (paper Table 4 protocol) or throughput, with ratios"

_BATCH = whole_number(1, 4096)
_RUNS = whole_number(1, 100_000)
_WARMUP = whole_number(0, 100_000)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `bench`."""
    be = subparsers.add_parser(NAME, help=HELP)
    be.add_argument(
        "models",
        nargs="*",
        default=["efficientnet_b0"],
        help="effnet models or exported .onnx / .xml files (default b0)",
    )
    be.add_argument(
        "--mode",
        choices=("latency", "throughput"),
        default="latency",
        help="latency: batch 1, 1 thread (paper); throughput: --batch-size, all threads",
    )
    be.add_argument("--batch-size", type=_BATCH, default=32, help="throughput batch size (default 32)")
    be.add_argument("--threads", type=thread_count, help="threads (default: 1 for latency, all for throughput)")
    be.add_argument("--runs", type=_RUNS, default=30, help="timed runs, the median is reported (default 30)")
    be.add_argument("--warmup", type=_WARMUP, default=5, help="untimed warm-up runs (default 5)")
    be.add_argument("--resolution", type=image_side, help="input size for every model (default: each native)")
    _add_rows(be)
    be.add_argument("--quick", action="store_true", help="smoke test: 3 runs, 1 warm-up")
    add_output_flags(be, "print JSON instead of a table", quiet=True)
    be.set_defaults(func=run)


def _add_rows(parser: argparse.ArgumentParser) -> None:
    """Which rows are timed beside each model."""
    parser.add_argument("--optimize", action="store_true", help="also time the optimized path (BN fold + best backend)")
    parser.add_argument("--no-twins", action="store_true", help="skip timm / torchvision twins")
    parser.add_argument("--no-resnets", action="store_true", help="skip ResNet-50 / ResNet-152")
    parser.add_argument(
        "--no-anchors", action="store_true", help="skip the twin on onnxruntime and effnet's export on OpenVINO"
    )
    parser.add_argument("--int8", action="store_true", help="also time effnet's int8 export (effnet export --int8)")
    parser.add_argument(
        "--calibration", type=Path, help="photos to calibrate --int8 on (default: random inputs, for timing only)"
    )


def run(args: argparse.Namespace) -> int:
    """Time every row and print the table (or JSON)."""
    import torch
    from tqdm import tqdm

    from effnet._util.console import print_json, show_bar
    from effnet.analysis.bench_report import exported_candidate, json_rows, table_lines
    from effnet.analysis.latency import BenchConfig, build_candidates, run_benchmark
    from effnet.deploy.runtimes import is_exported

    if not 1 <= args.batch_size <= 4096:
        raise ValueError(f"--batch-size must be in [1, 4096], got {args.batch_size}")
    if args.runs < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        raise ValueError("--runs must be >= 1, --warmup >= 0 and --threads >= 1")
    if args.calibration is not None and not args.int8:
        raise ValueError("--calibration would be ignored: it calibrates the --int8 rows; add --int8 or drop it")
    latency = args.mode == "latency"
    threads = args.threads or (1 if latency else torch.get_num_threads())
    runs, warmup = (3, 1) if args.quick else (args.runs, args.warmup)
    config = BenchConfig(args.mode, 1 if latency else args.batch_size, threads, warmup, runs, args.resolution)
    files = [Path(name) for name in args.models if is_exported(name)]
    candidates = [exported_candidate(path) for path in files] + build_candidates(
        [name for name in args.models if not is_exported(name)],
        twins=not args.no_twins,
        resnets=not args.no_resnets,
        optimize=args.optimize,
        anchors=not args.no_anchors,
        int8=args.int8,
        calibration=args.calibration,
    )
    bar_on = show_bar(not (args.json or args.quiet))
    with tqdm(total=runs, desc="timing rounds", file=sys.stderr, disable=not bar_on) as bar:
        results = run_benchmark(candidates, config, lambda _done, _total: bar.update(1))
    if args.json:
        print_json(json_rows(results))
        return 0
    print("\n".join(table_lines(results, config)))
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > cores:
        # Other processes on the cores slow every row; with several threads each op waits for its slowest
        # thread, so multi-thread timings can be inflated far more than the single-thread ones.
        print(f"warning: load average {load:.1f} exceeds the {cores} cores: timings are inflated", file=sys.stderr)
    return 0
