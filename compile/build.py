"""Building a bundle with its target's toolchain (`make` in the bundle folder) and measuring the flash its
code takes (binutils `size` of the target)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from compile.errors import CompileError
from compile.toolchains import CompileTarget


class BuildError(CompileError, RuntimeError):
    """The bundle's Makefile failed; the message holds the compiler's output."""


def run_make(bundle_dir: Path, target: CompileTarget, extra: list[str] | None = None) -> Path:
    """Build the bundle's runner with the target's compiler (`make` in the bundle directory)."""
    target.require_compiler()
    if shutil.which("make") is None:
        raise BuildError("'make' not found; install it with 'apt-get install make'")
    jobs = str(max(1, min(4, os.cpu_count() or 1)))
    proc = subprocess.run(["make", "-j", jobs, *(extra or [])], cwd=bundle_dir, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"{bundle_dir}: make failed for target {target.name}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return bundle_dir / "ucm_runner"


def section_sizes(obj: Path, target: CompileTarget) -> dict[str, int]:
    """Section sizes of an object file (binutils `size -A` of the target)."""
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
