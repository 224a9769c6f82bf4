"""Training throughput and peak memory of effnet's B0 beside timm's and torchvision's, side by side.

Every candidate trains B0 (1000 classes) at 128 px, batch 32, 2 threads, with the same optimizer (effnet's
RMSProp-TF, weight decay off BN/bias) and loss (cross-entropy, label smoothing 0.1) on a fixed random batch, so
only the model and its execution options differ.

Memory: each candidate alone in a fresh process; peak RSS over its training steps minus RSS just before the
first step (activations + gradients + optimizer state). Speed: all candidates in one process, in interleaved
rounds (each candidate's steps in turn), so that background load hits them alike; the median round counts.

    python benchmarks/train_throughput.py                 # eager, fast and memory options + anchors
    python benchmarks/train_throughput.py --compile       # also effnet with torch.compile (slow to build)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CANDIDATES = {
    # name: (implementation, options)
    "timm": ("timm", {}),
    "torchvision": ("torchvision", {}),
    "effnet": ("effnet", {}),
    "effnet channels_last": ("effnet", {"channels_last": True}),
    "effnet fast (channels_last + bf16)": ("effnet", {"channels_last": True, "amp": "bf16"}),
    "effnet memory (grad ckpt + mem-eff SiLU)": ("effnet", {"grad_checkpointing": True, "memory_efficient_act": True}),
    "effnet memory + bf16": ("effnet", {"grad_checkpointing": True, "memory_efficient_act": True, "amp": "bf16"}),
}
COMPILED = {"effnet fast + compile": ("effnet", {"channels_last": True, "amp": "bf16", "compile": True})}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as stream:
        import os

        return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _build(implementation: str, options: dict):
    import torch

    if implementation == "timm":
        import timm

        return timm.create_model("efficientnet_b0", num_classes=1000)
    if implementation == "torchvision":
        import torchvision

        return torchvision.models.efficientnet_b0(weights=None)
    import effnet

    model = effnet.create_model("efficientnet_b0", num_classes=1000)
    if options.get("memory_efficient_act"):
        from effnet.models.layers.conv_norm_act import use_memory_efficient_activations

        use_memory_efficient_activations(model)
    if options.get("grad_checkpointing"):
        model.set_grad_checkpointing(True)
    del torch
    return model


class _Trainee:
    """One candidate's model, optimizer and fixed batch, ready to take training steps."""

    def __init__(self, implementation: str, options: dict, size: int, batch: int) -> None:
        import contextlib

        import torch

        from effnet.train.optim import build_optimizer

        torch.manual_seed(0)
        model = _build(implementation, options).train()
        self.memory_format = torch.channels_last if options.get("channels_last") else torch.contiguous_format
        self.model = model.to(memory_format=self.memory_format)
        self.optimizer = build_optimizer(model, "rmsprop_tf", 0.016 * batch / 256, weight_decay=1e-5)
        self.images = torch.randn(batch, 3, size, size).contiguous(memory_format=self.memory_format)
        self.targets = torch.randint(0, 1000, (batch,))
        self.step_model = torch.compile(model) if options.get("compile") else model
        self.autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if options.get("amp") == "bf16" \
            else contextlib.nullcontext

    def step(self) -> None:
        import torch.nn.functional as F

        with self.autocast():
            logits = self.step_model(self.images)
        loss = F.cross_entropy(logits.float(), self.targets, label_smoothing=0.1)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def memory_worker(name: str, candidates: dict, steps: int, size: int, batch: int) -> dict:
    """Peak RSS growth over a few training steps of one candidate, alone in this process."""
    import resource

    import torch

    torch.set_num_threads(2)
    trainee = _Trainee(*candidates[name], size, batch)
    before = _rss_bytes()
    for _ in range(steps):
        trainee.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"name": name, "memory_mb": (peak - before) / 2**20}


def speed_worker(names: list[str], candidates: dict, steps: int, warmup: int, rounds: int, size: int,
                 batch: int) -> dict:
    """Images/s of every candidate in one process, rounds interleaved so that load hits all alike."""
    import torch

    torch.set_num_threads(2)
    trainees = {name: _Trainee(*candidates[name], size, batch) for name in names}
    for trainee in trainees.values():
        for _ in range(warmup):
            trainee.step()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        for name, trainee in trainees.items():
            start = time.perf_counter()
            for _ in range(steps):
                trainee.step()
            times[name].append((time.perf_counter() - start) / steps)
            print(f"round {round_index + 1}: {name:44s} {batch / times[name][-1]:6.1f} img/s", file=sys.stderr)
    # The median step time over rounds: robust to a round hit by a burst of other load.
    return {name: batch / sorted(values)[len(values) // 2] for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per candidate per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median counts")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes to build)")
    parser.add_argument("--only", nargs="*", help="candidate names to run")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", choices=("memory", "speed"), help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    args = parser.parse_args()
    candidates = {**CANDIDATES, **(COMPILED if args.compile else {})}
    names = args.only or list(candidates)
    if args.worker == "memory":
        print(json.dumps(memory_worker(args.name, candidates, args.steps, args.size, args.batch)))
        return
    if args.worker == "speed":
        print(json.dumps(speed_worker(names, candidates, args.steps, args.warmup, args.rounds, args.size,
                                      args.batch)))
        return
    common = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--size", str(args.size), "--batch",
              str(args.batch), "--rounds", str(args.rounds)] + (["--compile"] if args.compile else [])
    best: dict[str, dict] = {}
    for name in names:
        out = subprocess.run([sys.executable, __file__, "--worker", "memory", "--name", name, *common],
                             check=True, capture_output=True, text=True).stdout
        best[name] = json.loads(out.strip().splitlines()[-1])
        print(f"memory: {name:44s} {best[name]['memory_mb']:7.0f} MB", file=sys.stderr)
    speed = subprocess.run([sys.executable, __file__, "--worker", "speed", "--only", *names, *common], check=True,
                           stdout=subprocess.PIPE, text=True).stdout
    for name, img_per_s in json.loads(speed.strip().splitlines()[-1]).items():
        best[name]["img_per_s"] = img_per_s
    anchors = [best[name] for name in ("timm", "torchvision") if name in best]
    anchor_speed = max((row["img_per_s"] for row in anchors), default=None)
    anchor_memory = min((row["memory_mb"] for row in anchors), default=None)
    if args.json:
        print(json.dumps({"results": best, "anchor_img_per_s": anchor_speed, "anchor_memory_mb": anchor_memory}))
        return
    print(f"B0 training, {args.size}px, batch {args.batch}, 2 threads, RMSProp-TF; median of {args.rounds} "
          "interleaved rounds")
    print(f"{'candidate':44s} {'img/s':>7s} {'x best anchor':>13s} {'memory MB':>10s} {'x anchor mem':>12s}")
    for name, row in best.items():
        speed = f"{row['img_per_s'] / anchor_speed:.2f}x" if anchor_speed else "-"
        memory = f"{row['memory_mb'] / anchor_memory:.2f}x" if anchor_memory else "-"
        print(f"{name:44s} {row['img_per_s']:7.1f} {speed:>13s} {row['memory_mb']:10.0f} {memory:>12s}")


if __name__ == "__main__":
    main()
