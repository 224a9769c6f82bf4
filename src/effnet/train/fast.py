"""Fast by default: the `auto` runtime options of a TrainConfig turned into concrete settings for one device.

`resolve_fast_settings` is pure (it reads the machine from a `Machine` record), so the choices for a GPU can be
tested on a CPU; `probe_machine` reads this machine and `apply_fast_settings` sets torch's process-wide knobs.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from effnet._util.hardware import cgroup_cpu_limit, cpu_flags, load_average, usable_cpus

# The options `auto` can stand for, in the order the run header lists them.
AUTO_OPTIONS = ("amp", "channels_last", "compile", "tf32", "threads", "num_workers")

# torch.compile pays once its saving over the run exceeds its build time. Estimate, to be replaced by the GPU
# session's measurement: ~60 s to compile B0's training step per input shape, saving ~15% of a ~0.1 s step
# (batch 256 on an H100) = 0.015 s/step -> break-even near 4,000 steps; 5,000 steps per distinct image size
# (each progressive stage recompiles) leaves a margin. On CPU compile takes minutes for a few % (not measured
# to pay here), so `auto` never compiles there.
COMPILE_MIN_STEPS_PER_SHAPE = 5000

# The project's H200 run measured ~2.5 ms of one CPU core per image to decode and augment; 32 workers then
# prepare ~12,800 img/s, above B0's training step on one GPU, so more workers per GPU only cost memory.
MAX_GPU_WORKERS = 32
# On CPU the step and the augmentation share the cores: B0's step takes ~30 ms of core time per image at 128 px
# (BENCHMARKS.md, training throughput) against ~2.5 ms to prepare it, so a worker per 8 cores keeps up.
CPU_CORES_PER_WORKER = 8
GPU_PREFETCH_FACTOR = 4  # batches queued per worker: rides out slow JPEGs without holding much pinned memory


@dataclass(frozen=True)
class Machine:
    """What the resolution reads about the machine (see `probe_machine`); tests pass their own."""

    cpus: int  # usable cores: affinity capped by the cgroup quota
    load: float | None  # 1-minute load average (None: unknown)
    local_world_size: int = 1  # processes of this run on this machine (torchrun's LOCAL_WORLD_SIZE)
    torch_threads: int = 1  # torch's thread count now (its default, or what the caller set)
    cpu_flags: frozenset[str] | None = None
    cuda_bf16: bool = False  # the run's GPU computes bf16 natively (compute capability >= 8.0)


@dataclass(frozen=True)
class FastSettings:
    """The concrete runtime settings of a run, and which of them `auto` chose."""

    device: str
    amp: str | None  # bf16 | fp16 | None (fp32)
    channels_last: bool
    compile: bool
    tf32: bool  # TF32 matmuls / convolutions (CUDA only)
    cudnn_benchmark: bool
    threads: int
    num_workers: int
    pin_memory: bool
    persistent_workers: bool
    prefetch_factor: int | None
    auto: tuple[str, ...] = ()  # the AUTO_OPTIONS that were `auto` in the config
    notes: tuple[str, ...] = field(default=(), compare=False)  # warnings for the run's log

    def describe(self) -> str:
        """The run header's line: every setting, `(auto)` after the ones chosen for this device."""

        def mark(name: str, text: str) -> str:
            return f"{text} (auto)" if name in self.auto else text

        parts = [
            mark("amp", f"amp {self.amp or 'fp32'}"),
            mark("channels_last", f"channels_last {'on' if self.channels_last else 'off'}"),
            mark("compile", f"compile {'on' if self.compile else 'off'}"),
        ]
        if self.device == "cuda":
            parts += [
                mark("tf32", f"tf32 {'on' if self.tf32 else 'off'}"),
                f"cudnn.benchmark {'on' if self.cudnn_benchmark else 'off'}",
            ]
        parts += [mark("threads", f"{self.threads} thread(s)"), mark("num_workers", f"{self.num_workers} workers")]
        if self.num_workers and self.device == "cuda":
            parts.append(f"pinned, persistent, prefetch {self.prefetch_factor}")
        return (
            "fast settings: "
            + ", ".join(parts)
            + "; each is a flag (--amp, --channels-last, --compile, "
            + ("--tf32, " if self.device == "cuda" else "")
            + "--threads, --num-workers)"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for config.yaml and checkpoints (tuples become lists)."""
        values = asdict(self)
        values["auto"] = list(self.auto)
        del values["notes"]
        return values


def probe_machine(device: torch.device) -> Machine:
    """This machine as `resolve_fast_settings` sees it."""
    # Native bf16 from Ampere (sm_80) on; torch.cuda.is_bf16_supported() also says yes where it is emulated (slow).
    bf16 = device.type == "cuda" and tuple(torch.cuda.get_device_capability(device)) >= (8, 0)
    return Machine(
        cpus=usable_cpus(cgroup_limit=cgroup_cpu_limit()),
        load=load_average(),
        local_world_size=max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))),
        torch_threads=torch.get_num_threads(),
        cpu_flags=cpu_flags(),
        cuda_bf16=bf16,
    )


def resolve_fast_settings(
    config: Any, device: torch.device, machine: Machine, *, total_steps: int, image_sizes: int = 1
) -> FastSettings:
    """The settings a run of `config` uses on `device`: explicit values kept, `auto` ones chosen as measured best.

    CUDA: bf16 autocast where the GPU has it (fp16 + GradScaler otherwise), channels_last, TF32, cuDNN autotune,
    workers fitted to the cores per GPU with pinned memory, persistent workers and prefetch, torch.compile once
    the run has COMPILE_MIN_STEPS_PER_SHAPE steps per image size. CPU: fp32 and channels_last (measured on this
    project's 2-core AMD EPYC: bf16 autocast 0.4-0.8x, channels_last 1.45-2.3x), threads fitted to the free cores.
    """
    cuda = device.type == "cuda"
    auto = tuple(name for name in AUTO_OPTIONS if getattr(config, name) == "auto")
    amp = config.amp
    if amp == "auto":
        amp = ("bf16" if machine.cuda_bf16 else "fp16") if cuda else None
    channels_last = config.channels_last
    if channels_last == "auto":
        channels_last = device.type in ("cuda", "cpu")  # MPS: not measured, left as it was
    compile_ = config.compile
    if compile_ == "auto":
        compile_ = cuda and total_steps >= COMPILE_MIN_STEPS_PER_SHAPE * max(1, image_sizes)
    tf32 = cuda if config.tf32 == "auto" else bool(config.tf32) and cuda
    per_rank = max(1, machine.cpus // machine.local_world_size)
    workers = config.num_workers
    if workers == "auto":
        workers = min(MAX_GPU_WORKERS, per_rank - 1) if cuda else per_rank // CPU_CORES_PER_WORKER
    threads, notes = _fit_threads(config, machine, per_rank, workers, cuda)
    return FastSettings(
        device=device.type,
        amp=amp,
        channels_last=bool(channels_last),
        compile=bool(compile_),
        tf32=tf32,
        cudnn_benchmark=cuda and not config.deterministic,
        threads=threads,
        num_workers=workers,
        pin_memory=cuda,
        persistent_workers=workers > 0,
        prefetch_factor=GPU_PREFETCH_FACTOR if cuda and workers else None,
        auto=auto,
        notes=notes,
    )


def _fit_threads(config: Any, machine: Machine, per_rank: int, workers: int, cuda: bool) -> tuple[int, tuple[str, ...]]:
    """torch threads per process, and a warning when the machine is oversubscribed."""
    cores = machine.cpus
    busy = machine.load is not None and machine.load >= cores
    load = f"load average {machine.load:.1f} on {cores} core(s)" if machine.load is not None else ""
    if config.threads != "auto":
        threads = machine.torch_threads if config.threads is None else config.threads
        if busy and threads > 1:
            return threads, (
                f"warning: the machine is oversubscribed ({load}); {threads} threads per process "
                "will wait on each other: --threads 1 (or auto) is likely faster",
            )
        return threads, ()
    if cuda:  # the GPU computes; the main process only feeds it, the workers take the other cores
        threads = max(1, per_rank - workers)
    elif config.deterministic:  # thread count changes CPU summation order: keep it independent of the load
        threads = min(machine.torch_threads, per_rank)
    else:
        # Threads on a core another process holds stall every parallel op of the step (on this 2-core box under
        # load: ~9 s/step with 2 threads, ~1.4 s with 1), so count only the cores the load leaves free.
        free = cores - (machine.load or 0.0)
        threads = max(1, round(free / machine.local_world_size)) - workers
        threads = max(1, min(threads, per_rank - workers, machine.torch_threads))
    if busy and not cuda:
        return threads, (
            f"warning: the machine is oversubscribed ({load}): training with {threads} thread(s) "
            "per process; --threads N overrides",
        )
    return threads, ()


def apply_fast_settings(settings: FastSettings) -> None:
    """Set torch's process-wide knobs: thread count and, on CUDA, TF32 and cuDNN autotuning."""
    torch.set_num_threads(settings.threads)
    if settings.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = settings.tf32
        torch.backends.cudnn.allow_tf32 = settings.tf32
        torch.backends.cudnn.benchmark = settings.cudnn_benchmark
