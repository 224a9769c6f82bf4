"""CPU inference timing: the paper's Table 4 protocol (batch 1, one thread, warm-up, median of N runs) and a
throughput mode, with timm / torchvision twins and ResNets timed in the same process for honest ratios.
"""

from __future__ import annotations

import importlib.util
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from effnet.analysis.runtimes import int8_runner, onnx_runtime_runner, optimized_runner
from effnet.analysis.timing import Runner, time_runner, torch_threads
from effnet.deploy.runtimes import runtime_available
from effnet.models.registry import create_model, resolve_spec

BENCH_MODES = ("latency", "throughput")


@dataclass(frozen=True)
class BenchConfig:
    """How to time: batch size, threads, warm-up and measured runs; resolution None = each model's native."""

    mode: str = "latency"
    batch_size: int = 1
    threads: int = 1
    warmup: int = 5
    runs: int = 30
    resolution: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in BENCH_MODES:
            raise ValueError(f"mode must be one of {BENCH_MODES}, got {self.mode!r}")
        if self.batch_size < 1 or self.threads < 1 or self.runs < 1 or self.warmup < 0:
            raise ValueError("batch_size, threads and runs must be >= 1 and warmup >= 0")

    @classmethod
    def paper(cls, runs: int = 30, warmup: int = 5, resolution: int | None = None) -> BenchConfig:
        """Table 4 of the paper: batch 1 on a single core."""
        return cls("latency", 1, 1, warmup, runs, resolution)

    @classmethod
    def throughput(cls, batch_size: int = 32, runs: int = 10, warmup: int = 2) -> BenchConfig:
        """Images per second at batch `batch_size` with every core."""
        return cls("throughput", batch_size, torch.get_num_threads(), warmup, runs)


@dataclass(frozen=True)
class Candidate:
    """One thing to time: a label, its family (effnet, timm, torchvision, resnet) and a lazy runner factory."""

    label: str
    family: str
    group: str  # the effnet model this row is compared with (its own name for ResNets)
    resolution: int
    build: Callable[[torch.Tensor, int], tuple[Runner, str]]  # (example input, threads) -> (runner, backend)


@dataclass(frozen=True)
class BenchResult:
    """Timing of one candidate: median and 10th/90th percentile latency of one batch, and images per second."""

    label: str
    family: str
    group: str
    backend: str
    resolution: int
    batch_size: int
    threads: int
    median_ms: float
    p10_ms: float
    p90_ms: float

    @property
    def images_per_s(self) -> float:
        """Throughput implied by the median batch time."""
        return self.batch_size * 1000.0 / self.median_ms


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def eager_runner(model: nn.Module) -> Callable[[torch.Tensor, int], tuple[Runner, str]]:
    """Plain eval-mode PyTorch, no tricks: the baseline every ratio refers to."""
    return lambda _x, _threads: (model.eval(), "eager")


def run_benchmark(
    candidates: Sequence[Candidate], config: BenchConfig, progress: Callable[[int, int], None] | None = None
) -> list[BenchResult]:
    """Time every candidate under `config`; `progress(done, total)` is called after each round.

    Runs are interleaved (one timed call of each candidate per round) so that load from other processes, CPU
    frequency changes and thermal drift hit every candidate alike instead of whichever happened to run then.
    """
    generator = torch.Generator().manual_seed(0)
    prepared: list[tuple[Candidate, int, torch.Tensor, Runner, str, list[float]]] = []
    with torch_threads(config.threads):
        for candidate in candidates:
            resolution = config.resolution or candidate.resolution
            x = torch.randn(config.batch_size, 3, resolution, resolution, generator=generator)
            runner, backend = candidate.build(x, config.threads)
            time_runner(runner, x, config.warmup, 0)
            prepared.append((candidate, resolution, x, runner, backend, []))
        for done in range(config.runs):
            for _candidate, _resolution, x, runner, _backend, times in prepared:
                times += time_runner(runner, x, 0, 1)
            if progress is not None:
                progress(done + 1, config.runs)
    results = []
    for candidate, resolution, _x, _runner, backend, times in prepared:
        ms = [t * 1000.0 for t in times]
        results.append(
            BenchResult(
                candidate.label,
                candidate.family,
                candidate.group,
                backend,
                resolution,
                config.batch_size,
                config.threads,
                statistics.median(ms),
                _quantile(ms, 0.1),
                _quantile(ms, 0.9),
            )
        )
    return results


# effnet name -> twin constructor names, for the architectures torchvision / timm implement.
TORCHVISION_TWINS = {
    **{f"efficientnet_b{i}": f"efficientnet_b{i}" for i in range(8)},
    **{f"efficientnetv2_{size}": f"efficientnet_v2_{size}" for size in "sml"},
}
TIMM_TWINS = {
    **{f"efficientnet_b{i}": f"efficientnet_b{i}" for i in range(9)},
    **{f"efficientnet_lite{i}": f"efficientnet_lite{i}" for i in range(5)},
    **{f"efficientnetv2_b{i}": f"tf_efficientnetv2_b{i}" for i in range(4)},
    **{f"efficientnetv2_{size}": f"tf_efficientnetv2_{size}" for size in ("s", "m", "l", "xl")},
}
RESNETS = ("resnet50", "resnet152")


def _torchvision_model(name: str) -> nn.Module:
    import torchvision

    return torchvision.models.get_model(name, weights=None)  # random weights: speed does not depend on them


def _timm_model(name: str) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False)


def _available(package: str, name: str) -> bool:
    if importlib.util.find_spec(package) is None:
        return False
    if package == "timm":
        import timm

        return name in timm.list_models(name)
    return True


def _lazy(factory: Callable[[str], nn.Module], name: str) -> Callable[[torch.Tensor, int], tuple[Runner, str]]:
    """Build the model only when its turn comes, so that skipped or failed runs cost nothing."""

    def build(_x: torch.Tensor, _threads: int) -> tuple[Runner, str]:
        return factory(name).eval(), "eager"

    return build


def _anchor_candidates(name: str, resolution: int, model: nn.Module, twins: bool) -> list[Candidate]:
    """What a user would otherwise deploy: the torchvision twin (timm's where torchvision has none) exported to
    onnxruntime, and effnet's own export on OpenVINO."""
    rows = []
    if twins and runtime_available("onnxruntime"):
        if name in TORCHVISION_TWINS and _available("torchvision", TORCHVISION_TWINS[name]):
            twin, family, factory = TORCHVISION_TWINS[name], "torchvision", _torchvision_model
        elif name in TIMM_TWINS and _available("timm", TIMM_TWINS[name]):
            twin, family, factory = TIMM_TWINS[name], "timm", _timm_model
        else:
            twin = ""
        if twin:
            build = onnx_runtime_runner(partial(factory, twin), "onnxruntime")
            rows.append(Candidate(f"{family} {twin} onnxruntime", family, name, resolution, build))
    if runtime_available("openvino"):
        build = onnx_runtime_runner(lambda: model, "openvino", fold=True)
        rows.append(Candidate(f"effnet {name} openvino", "effnet", name, resolution, build))
    return rows


def build_candidates(
    models: Sequence[str],
    *,
    twins: bool = True,
    resnets: bool = True,
    optimize: bool = False,
    anchors: bool = True,
    int8: bool = False,
    calibration: str | Path | None = None,
) -> list[Candidate]:
    """effnet models (eager; the optimized path with `optimize`; the int8 export with `int8`, calibrated on
    photos from `calibration`), their installed twins, the exported-runtime `anchors`, and ResNets."""
    candidates: list[Candidate] = []
    for name in models:
        resolution = resolve_spec(name).resolution
        model = create_model(name)
        candidates.append(Candidate(f"effnet {name}", "effnet", name, resolution, eager_runner(model)))
        if optimize:
            label = f"effnet {name} --optimize"
            candidates.append(Candidate(label, "effnet", name, resolution, optimized_runner(model)))
        if int8:
            build = int8_runner(model, calibration)
            candidates.append(Candidate(f"effnet {name} --int8", "effnet", name, resolution, build))
        if anchors:
            candidates += _anchor_candidates(name, resolution, model, twins)
        if not twins:
            continue
        if name in TORCHVISION_TWINS and _available("torchvision", TORCHVISION_TWINS[name]):
            twin = TORCHVISION_TWINS[name]
            build = _lazy(_torchvision_model, twin)
            candidates.append(Candidate(f"torchvision {twin}", "torchvision", name, resolution, build))
        if name in TIMM_TWINS and _available("timm", TIMM_TWINS[name]):
            twin = TIMM_TWINS[name]
            candidates.append(Candidate(f"timm {twin}", "timm", name, resolution, _lazy(_timm_model, twin)))
    if resnets and _available("torchvision", "resnet50"):
        for name in RESNETS:
            candidates.append(Candidate(f"torchvision {name}", "resnet", name, 224, _lazy(_torchvision_model, name)))
    return candidates


def baseline_ratios(results: Sequence[BenchResult]) -> dict[str, float]:
    """Each row's median over its group's baseline (torchvision eager when timed, else the group's first row)."""
    baselines: dict[str, float] = {}
    for result in results:
        if result.family == "torchvision" and result.backend == "eager":
            baselines[result.group] = result.median_ms
    for result in results:
        baselines.setdefault(result.group, result.median_ms)
    return {result.label: result.median_ms / baselines[result.group] for result in results}


def speedups_over(results: Sequence[BenchResult], reference: str = "resnet152") -> dict[str, float]:
    """How many times faster than `reference` (e.g. ResNet-152, paper Table 4) each effnet row runs."""
    matches = [r.median_ms for r in results if r.group == reference]
    if not matches:
        return {}
    return {r.label: matches[0] / r.median_ms for r in results if r.family == "effnet"}
