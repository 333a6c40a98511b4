"""Which CPU a timing was measured on: the model name and the instruction-set features that decide the speed
of int8 and float kernels (x86-64: AVX2, FMA, AVX-512, VNNI, AMX; AArch64: NEON, dot product, i8mm, SVE;
RISC-V: the V extension), read from Linux's /proc/cpuinfo of the host or of a board. Printed beside every
timing: figures from one machine do not carry over to another, ratios measured in one run do."""

from __future__ import annotations

import platform
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from targets.transport import Transport

X86_FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "amx_int8")
ARM_FEATURES = {"asimd": "neon", "asimddp": "dotprod", "i8mm": "i8mm", "sve": "sve", "sve2": "sve2"}
ARM_PARTS = {  # "CPU part" of Arm's own cores (implementer 0x41)
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2",
    "0xd49": "Neoverse-N2", "0xd4f": "Neoverse-V2",
}


@dataclass(frozen=True)
class CpuInfo:
    model: str
    arch: str
    features: tuple[str, ...]

    def describe(self) -> str:
        features = " ".join(self.features) if self.features else "none of the SIMD features looked for"
        return f"{self.model} ({self.arch}; ISA: {features})"

    def to_dict(self) -> dict:
        return {**asdict(self), "features": list(self.features)}


def _fields(text: str) -> list[tuple[str, str]]:
    pairs = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            pairs.append((key.strip().lower(), value.strip()))
    return pairs


def _first(pairs: list[tuple[str, str]], *keys: str) -> str | None:
    return next((v for k, v in pairs if k in keys and v), None)


def parse_cpuinfo(text: str, arch: str) -> CpuInfo:
    """The CPU described by a /proc/cpuinfo text of a machine whose `uname -m` is `arch`."""
    pairs = _fields(text)
    if arch in ("x86_64", "amd64", "i686"):
        flags = set((_first(pairs, "flags") or "").split())
        return CpuInfo(_first(pairs, "model name") or "unknown x86 CPU", "x86_64",
                       tuple(f for f in X86_FEATURES if f in flags))
    if arch in ("aarch64", "arm64"):
        flags = set((_first(pairs, "features") or "").split())
        part = (_first(pairs, "cpu part") or "").lower()
        model = _first(pairs, "model name") or ARM_PARTS.get(part) or f"Arm CPU part {part or 'unknown'}"
        hardware = _first(pairs, "model", "hardware")
        if hardware:
            model = f"{model} in {hardware}"
        return CpuInfo(model, "aarch64", tuple(name for flag, name in ARM_FEATURES.items() if flag in flags))
    if arch.startswith("riscv"):
        isa = (_first(pairs, "isa") or "").lower()
        base = re.match(r"rv\d+([a-z]*)", isa)
        letters = base.group(1) if base else ""
        model = _first(pairs, "uarch", "model name") or "RISC-V CPU"
        features = (isa.split("_")[0], "rvv") if "v" in letters else (isa.split("_")[0],)
        return CpuInfo(model, arch, features if isa else ())
    return CpuInfo(_first(pairs, "model name") or platform.processor() or "unknown CPU", arch, ())


def host_cpu() -> CpuInfo:
    """This machine's CPU."""
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text(errors="replace") if cpuinfo.is_file() else ""
    return parse_cpuinfo(text, platform.machine().lower())


def host_target(cpu: CpuInfo) -> str:
    """The fastest compile target an x86-64 CPU runs: `x86_64-vnni` where it has AVX-512 VNNI (and the
    AVX-512 subsets that target's code uses), else `x86_64` (AVX2)."""
    return "x86_64-vnni" if {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"} <= set(cpu.features) else "x86_64"


def board_cpu(transport: Transport, emulated: bool, timeout_s: float) -> str:
    """A board's CPU, described from its own `uname -m` and /proc/cpuinfo; or what emulates it."""
    if emulated:
        return f"emulated on this host: {host_cpu().describe()}"
    arch = transport.run(["uname", "-m"], timeout_s)
    info = transport.run(["cat", "/proc/cpuinfo"], timeout_s)
    if arch.exit_status or info.exit_status:
        return "unknown (the board has no /proc/cpuinfo)"
    return parse_cpuinfo(info.stdout, arch.stdout.strip()).describe()
