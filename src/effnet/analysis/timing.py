"""Timing one runner: wall-clock seconds per call after a warm-up, under a set torch thread count."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

Runner = Callable[[torch.Tensor], object]


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_runner(runner: Runner, x: torch.Tensor, warmup: int, runs: int) -> list[float]:
    """Wall-clock seconds of each of `runs` calls, after `warmup` untimed calls (caches, allocator, JIT)."""
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            runner(x)
        for _ in range(runs):
            start = time.perf_counter()
            runner(x)
            times.append(time.perf_counter() - start)
    return times
