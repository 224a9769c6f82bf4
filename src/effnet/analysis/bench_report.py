"""What `effnet bench` times and prints, as a library: a row for an exported file, the table and the JSON rows."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from effnet._util.cpuinfo import cpu_info
from effnet.analysis.latency import BenchConfig, BenchResult, Candidate, baseline_ratios, speedups_over
from effnet.deploy.runtimes import open_exported, runtime_versions


def exported_candidate(path: Path) -> Candidate:
    """A bench row for an exported file, timed on the runtime that `effnet predict` would run it on."""
    probe = open_exported(path)
    size = probe.input_hw[0] if probe.input_hw else probe.preprocess.input_size

    def build(_example: Any, threads: int) -> tuple[Any, str]:
        model = open_exported(path, threads=threads)
        return model, model.runtime

    return Candidate(str(path), "effnet", str(path), size, build)


def json_rows(results: Sequence[BenchResult]) -> list[dict[str, Any]]:
    """One plain row per result, with the CPU, images/s and both ratios."""
    ratios, speedups = baseline_ratios(results), speedups_over(results)
    cpu = cpu_info()  # its flags are a frozenset: print_json writes them as a sorted list
    return [
        vars(r)
        | {
            "cpu": cpu,
            "images_per_s": r.images_per_s,
            "vs_baseline": ratios[r.label],
            "resnet152_speedup": speedups.get(r.label),
        }
        for r in results
    ]


def table_lines(results: Sequence[BenchResult], config: BenchConfig) -> list[str]:
    """The table: the protocol and load, the CPU, one line per result with its ratios, and what the ratios mean."""
    ratios, speedups = baseline_ratios(results), speedups_over(results)
    lines = [
        f"{config.mode}: batch {config.batch_size}, {config.threads} thread(s), median of {config.runs} runs after "
        f"{config.warmup} warm-up, {runtime_versions()}; load average {os.getloadavg()[0]:.1f}",
        f"CPU: {cpu_info().summary()}",
        f"{'model':<44}{'backend':<22}{'res':>4}{'median ms':>11}{'p10-p90 ms':>15}{'img/s':>9}{'vs tv':>7}"
        f"{'R152/x':>8}",
    ]
    for r in results:
        speedup = f"{speedups[r.label]:>7.1f}x" if r.label in speedups else f"{'':>8}"
        ratio = f"{ratios[r.label]:>6.2f}x" if r.family != "resnet" else f"{'-':>7}"
        lines.append(
            f"{r.label:<44}{r.backend:<22}{r.resolution:>4}{r.median_ms:>11.2f}"
            f"{f'{r.p10_ms:.1f}-{r.p90_ms:.1f}':>15}{r.images_per_s:>9.1f}{ratio}{speedup}"
        )
    lines.append(
        "vs tv: median / torchvision twin's eager median (same model); R152/x: ResNet-152 median / this median"
    )
    return lines
