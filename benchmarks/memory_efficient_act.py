"""What `--memory-efficient-act` saves: bytes autograd keeps for backward and peak RSS of a B0 training step.

Each variant runs alone in a fresh process: (1) the bytes of every tensor saved for backward during one training
forward (torch.autograd.graph.saved_tensors_hooks; each storage counted once, parameters excluded), (2) peak RSS
over two forward + backward steps minus RSS before the first. Step time: all variants in one process, interleaved
rounds, median (ratios only; the machine may be shared).

    python benchmarks/memory_efficient_act.py --size 224 --batch 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

VARIANTS = {
    "default": {},
    "--memory-efficient-act": {"memory_efficient_act": True},
    "--grad-checkpointing": {"grad_checkpointing": True},
    "both": {"memory_efficient_act": True, "grad_checkpointing": True},
}


def _model(options: dict):
    import effnet
    from effnet.models.layers.conv_norm_act import use_memory_efficient_activations

    model = effnet.create_model("efficientnet_b0").train()
    if options.get("memory_efficient_act"):
        use_memory_efficient_activations(model)
    if options.get("grad_checkpointing"):
        model.set_grad_checkpointing(True)
    return model


def _rss() -> int:
    with open("/proc/self/statm") as stream:
        return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(options: dict, size: int, batch: int) -> dict:
    """Saved-tensor bytes of one forward and the peak RSS growth of two training steps (this process)."""
    import torch

    torch.manual_seed(0)
    model = _model(options)
    x = torch.randn(batch, 3, size, size)
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = max(storages.get(storage.data_ptr(), 0), storage.nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = model(x)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = sum(n for ptr, n in storages.items() if ptr not in params)
    del out
    before = _rss()
    for _ in range(2):
        model(x).logsumexp(1).mean().backward()
    return {"saved_mib": saved / 2**20, "peak_rss_mib": (_peak_rss() - before) / 2**20}


def time_steps(size: int, batch: int, rounds: int) -> dict[str, float]:
    """Median seconds per training step of each variant, interleaved."""
    import torch

    models = {name: _model(options) for name, options in VARIANTS.items()}
    x = torch.randn(batch, 3, size, size)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds + 1):  # the first round warms up
        for name, model in models.items():
            start = time.perf_counter()
            model(x).logsumexp(1).mean().backward()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values[1:]) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(VARIANTS[args.child], args.size, args.batch)))
        return
    import torch

    from effnet._util.cpuinfo import cpu_info

    print(cpu_info().short())
    print(f"load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}; B0 at {args.size} px, batch {args.batch}")
    rows = {}
    for name in VARIANTS:
        command = [sys.executable, __file__, f"--child={name}", "--size", str(args.size), "--batch", str(args.batch)]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        rows[name] = json.loads(subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    seconds = time_steps(args.size, args.batch, args.rounds)
    base = rows["default"]
    print("| variant | saved for backward MiB | x default | peak RSS growth MiB | x default | step time x default |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['saved_mib']:.1f} | {row['saved_mib'] / base['saved_mib']:.2f}x | "
            f"{row['peak_rss_mib']:.0f} | {row['peak_rss_mib'] / base['peak_rss_mib']:.2f}x | "
            f"{seconds[name] / seconds['default']:.2f}x |"
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
