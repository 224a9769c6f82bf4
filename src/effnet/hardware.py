"""What the CPU can do natively, read from /proc/cpuinfo, to warn before a slow configuration runs."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from effnet.analysis.cpuinfo import cpu_info

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
