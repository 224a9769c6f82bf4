"""How a search scales with Ray workers: the same small search with 1 and with 2 trials at a time.

    python benchmarks/search_scaling.py            # the default small search below
    python benchmarks/search_scaling.py --epochs 2 --num-train 400

Every configuration runs the same candidates with the same seed in a fresh folder, so it trains the same
models; the table shows wall time, speed-up over one worker and whether the accuracies agree. The machine's
load average is printed too: on a shared machine other jobs take cores, and the numbers say so.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from effnet.search import GridConfig, RunnerConfig, SearchConfig, proxy_spec, proxy_train_config, run_search


def main() -> None:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--num-train", type=int, default=300)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--backend", default="ray", choices=("ray", "sequential"))
    args = parser.parse_args()

    # Five candidates: (1, 1.2, 1.2), (1.2, 1, 1.2), (1.2, 1.2, 1), (1.4, 1, 1.2), (1.4, 1.2, 1) at 15% tolerance.
    grid = GridConfig(alpha=(1.0, 1.4), beta=(1.0, 1.2), gamma=(1.0, 1.2), step=0.2, tolerance=0.15)
    train = proxy_train_config(epochs=args.epochs, num_train=args.num_train, num_val=100, batch_size=20)
    base = proxy_spec(resolution=args.resolution)
    cores = os.cpu_count() or 1
    setups = [("1 worker x all cores", 1, cores), ("1 worker x 1 thread", 1, 1), ("2 workers x 1 thread", 2, 1)]
    rows, reference = [], None
    for label, workers, threads in setups:
        with tempfile.TemporaryDirectory() as out:
            config = SearchConfig(base=base, grid=grid, train=train, out_dir=out, include_base=False,
                                  runner=RunnerConfig(backend=args.backend, workers=workers, threads=threads))
            load = os.getloadavg()[0]
            started = time.perf_counter()
            result = run_search(config)
            seconds = time.perf_counter() - started
        accuracies = {row.trial_id: row.val_acc for row in result.rows}
        reference = reference or seconds
        rows.append((label, seconds, reference / seconds, load, accuracies))
    # Thread count changes float summation order, so only equal-thread setups must agree exactly.
    same = rows[1][4] == rows[2][4]
    print(f"{len(result.rows)} candidates, {args.epochs} epoch(s) of {args.num_train} images at "
          f"{args.resolution}px, backend {args.backend}, {cores} cores")
    print("| setup | wall (s) | speed-up vs first row | load avg at start |")
    print("|---|---|---|---|")
    for label, seconds, speedup, load, _ in rows:
        print(f"| {label} | {seconds:.1f} | {speedup:.2f}x | {load:.1f} |")
    print(f"1-thread setups (1 and 2 workers) give identical accuracies: {same}")
    if not same:
        for label, *_, accuracies in rows:
            print(label, accuracies)


if __name__ == "__main__":
    main()
