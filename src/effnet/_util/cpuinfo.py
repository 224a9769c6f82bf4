"""What the CPU can do for inference: model name and the instruction sets int8 / bf16 speed depends on."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

# Instruction-set families that change inference speed, each with the /proc/cpuinfo flags that signal it.
# VNNI does int8 dot products in one instruction (without it int8 GEMMs go through 16-bit intermediates);
# AMX adds tile matrix units for int8 / bf16; avx512_bf16 converts and multiplies bf16.
ISA_FLAGS: dict[str, tuple[str, ...]] = {
    "AVX2": ("avx2",),
    "AVX-512": ("avx512f",),
    "AVX-512 VNNI": ("avx512_vnni", "avx512vnni"),
    "AVX-VNNI": ("avx_vnni",),
    "AVX-512 BF16": ("avx512_bf16",),
    "AMX": ("amx_tile",),
    "AMX-INT8": ("amx_int8",),
    "AMX-BF16": ("amx_bf16",),
}


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's model name, core count and which of `ISA_FLAGS` it supports."""

    model: str
    cores: int
    isa: dict[str, bool]
    flags: frozenset[str] | None = None  # every flag of the first processor; None where the OS lists none

    def summary(self) -> str:
        """One line: model, cores, then every instruction set as yes / no."""
        marks = " ".join(f"{name}:{'yes' if present else 'no'}" for name, present in self.isa.items())
        return f"{self.model}, {self.cores} cores; {marks}"

    def supported(self) -> list[str]:
        """The names of the instruction sets this CPU has, e.g. ['AVX2', 'AVX-512', 'AVX-512 VNNI']."""
        return [name for name, present in self.isa.items() if present]

    def short(self) -> str:
        """One line for a benchmark header: model, cores and the instruction sets present."""
        return f"{self.model}, {self.cores} cores, {', '.join(self.supported()) or 'no listed extensions'}"


def parse_cpuinfo(text: str) -> CpuInfo:
    """A CpuInfo from the text of /proc/cpuinfo (its first processor block is enough: cores share flags)."""
    model, flags = "", None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and flags is None:  # "Features" on ARM
            flags = frozenset(value.split())
    isa = {name: any(flag in (flags or ()) for flag in aliases) for name, aliases in ISA_FLAGS.items()}
    name = model or platform.processor() or platform.machine() or "unknown CPU"
    return CpuInfo(name, os.cpu_count() or 1, isa, flags)


def cpu_info(path: str | Path = "/proc/cpuinfo") -> CpuInfo:
    """This machine's CpuInfo; without /proc/cpuinfo (macOS, Windows) the flags all read as unknown = no."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    return parse_cpuinfo(text)
