"""What the machine offers a run: native CPU instructions (/proc/cpuinfo), usable cores and how busy they are."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

from effnet._util.cpuinfo import cpu_info

# x86 flags of CPUs whose instructions compute bf16 directly (AVX512-BF16: Cooper Lake, Zen 4+; AMX: Sapphire
# Rapids+). Without them PyTorch emulates bf16 on CPU, several times slower than fp32.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str] | None:
    """The first CPU's feature flags, or None where /proc/cpuinfo is missing or lists none (macOS, ARM)."""
    return cpu_info(cpuinfo).flags


def cpu_has_native_bf16(flags: Iterable[str] | None) -> bool | None:
    """True / False from the flags; None when they are unknown (then no warning is given)."""
    if flags is None:
        return None
    return bool(NATIVE_BF16_FLAGS & set(flags))


def bf16_cpu_warning(device_type: str, amp: str | None, flags: Iterable[str] | None = None) -> str | None:
    """A warning for bf16 autocast on a CPU without native bf16 (flags default to this machine's)."""
    if device_type != "cpu" or amp != "bf16":
        return None
    flags = cpu_flags() if flags is None else flags
    if cpu_has_native_bf16(flags) is not False:
        return None
    return (
        "warning: --amp bf16 on a CPU without native bf16 (no avx512_bf16 / amx_bf16 in /proc/cpuinfo): PyTorch "
        "emulates it, often several times slower than fp32; drop --amp on this machine"
    )


def cgroup_cpu_limit(root: str | Path = "/sys/fs/cgroup") -> float | None:
    """The CPUs a container may use from its cgroup quota (v2 cpu.max, v1 cfs quota/period); None = no limit."""
    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def usable_cpus(affinity: int | None = None, cgroup_limit: float | None = None) -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup quota (rounded up; at least 1)."""
    if affinity is None:
        affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores = affinity if cgroup_limit is None else min(affinity, math.ceil(cgroup_limit))
    return max(1, cores)


def load_average() -> float | None:
    """The 1-minute load average (runnable tasks, all processes), or None where the OS has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
