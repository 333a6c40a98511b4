"""Building a bundle with its target's toolchain (`make` in the bundle folder) and measuring what it takes:
the flash of the model's code (binutils `size` of the target) and, for firmware, the flash and RAM of the
linked ELF."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from compile.errors import CompileError
from compile.toolchains import CompileTarget

# GNU ld, when a section does not fit its MEMORY region.
_OVERFLOW = re.compile(r"region `(\w+)' overflowed by (\d+) bytes")
# Sections of the firmware ELF (compile/executor/runtime/firmware/*.ld): what the board keeps in flash, in
# SRAM, and in the runner's staging memory (not the model's).
FLASH_SECTIONS = (".text", ".rodata", ".ARM.extab", ".ARM.exidx", ".data")
RAM_SECTIONS = (".data", ".bss", ".heap", ".stack")


class BuildError(CompileError, RuntimeError):
    """The bundle's Makefile failed; the message holds the compiler's output."""


class RamBudgetError(BuildError):
    """The firmware does not fit the board's RAM: the message says how many bytes it needs."""


def make_variables(bundle_dir: Path) -> dict[str, str]:
    """`NAME ?= VALUE` and `NAME = VALUE` lines of the bundle's target.mk."""
    pairs = re.findall(r"^(\w+)\s*\??=\s*(.*)$", (bundle_dir / "target.mk").read_text(), flags=re.M)
    return {name: value.strip() for name, value in pairs}


def run_make(bundle_dir: Path, target: CompileTarget, extra: list[str] | None = None,
             model_ram: dict | None = None) -> Path:
    """Build the bundle's runner (`make` in the bundle directory, with `extra` arguments); the runner's path.
    `model_ram`: the model's RAM (metadata "ram_bytes"), named when a firmware overflows its RAM budget."""
    target.require_compiler()
    if shutil.which("make") is None:
        raise BuildError("'make' not found; install it with 'apt-get install make'")
    jobs = str(max(1, min(4, os.cpu_count() or 1)))
    args = ["make", "-j", jobs, *(extra or [])]
    proc = subprocess.run(args, cwd=bundle_dir, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        overflow = _OVERFLOW.search(proc.stderr)
        if overflow and target.bare_metal:
            raise RamBudgetError(_overflow_message(bundle_dir, target, extra or [], overflow, model_ram))
        raise BuildError(f"{bundle_dir}: make failed for target {target.name}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return bundle_dir / target.runner


def _overflow_message(bundle_dir: Path, target: CompileTarget, extra: list[str], overflow: re.Match,
                      model_ram: dict | None) -> str:
    region, excess = overflow.group(1), int(overflow.group(2))
    if region != "SRAM":
        return (f"target {target.name}: the firmware does not fit the board: region {region} of "
                f"{target.firmware}.ld overflowed by {excess:,} bytes ({bundle_dir})")
    overrides = dict(arg.split("=", 1) for arg in extra if "=" in arg)
    budget = int(overrides.get("RAM_BYTES", make_variables(bundle_dir)["RAM_BYTES"]))
    model = ""
    if model_ram:
        model = (f"; of that, the model: {model_ram['total']:,} B (arena {model_ram['arena']:,}, workspace "
                 f"{model_ram['workspace']:,}, image io {model_ram['io']:,}), the rest is stack, heap reserve and runtime data")
    return (f"target {target.name}: the firmware needs {budget + excess:,} bytes of RAM but the budget is "
            f"{budget:,} (region SRAM of {target.firmware}.ld overflowed by {excess:,} bytes){model}. "
            f"Raise the budget (python -m compile --ram-budget {budget + excess}) if the board has that much SRAM, "
            f"or make the model smaller")


def section_sizes(obj: Path, target: CompileTarget) -> dict[str, int]:
    """Section sizes of an object file or ELF (binutils `size -A` of the target)."""
    size_tool = f"{target.cross_prefix}size"
    proc = subprocess.run([size_tool, "-A", str(obj)], capture_output=True, text=True, check=True)
    sizes: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = sizes.get(parts[0], 0) + int(parts[1])
    return sizes


def code_bytes(bundle_dir: Path, target: CompileTarget) -> int:
    """Flash taken by the model's code: text and read-only data of the executor, shim and kernels."""
    total = 0
    for name in ("ucm_model.o", "ucm_shim.o", "kernels.o"):
        sizes = section_sizes(bundle_dir / name, target)
        total += sum(v for k, v in sizes.items() if k.startswith((".text", ".rodata")))
    return total


def firmware_memory(elf: Path, target: CompileTarget) -> dict[str, int]:
    """Flash (code, const data and the initial values of .data) and RAM (.data, .bss, heap reserve, stack) of a
    linked firmware, and the runner's staging memory outside the model's RAM."""
    sizes = section_sizes(elf, target)
    return {
        "flash": sum(sizes.get(s, 0) for s in FLASH_SECTIONS),
        "ram": sum(sizes.get(s, 0) for s in RAM_SECTIONS),
        **{f"ram{s.replace('.', '_')}": sizes.get(s, 0) for s in RAM_SECTIONS},
        "staging": sizes.get(".staging", 0),
    }
