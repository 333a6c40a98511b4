"""python -m compile --target cortex-a72 [--onnx PATH] [--out DIR] [--kernels c|llvm] [--no-build]
[--strict | --allow-float] [--ram-budget BYTES]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from compile.config import DEFAULT_ONNX, CompileConfig
from compile.toolchains import TARGETS, format_target_table
from ucm.errors import run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compile", description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="cortex-a72", help=f"one of: {', '.join(TARGETS)} (default cortex-a72)")
    parser.add_argument("--onnx", type=Path, default=DEFAULT_ONNX, help="QCDQ int8 or float ONNX (default: shipped int8)")
    parser.add_argument("--out", type=Path, default=None, help="bundle directory (default dist/<target>)")
    parser.add_argument("--kernels", choices=("c", "llvm"), default=None,
                        help="kernel code: TVM's C source or TVM's LLVM object code (default llvm)")
    parser.add_argument("--no-build", action="store_true", help="write the bundle without compiling it")
    parser.add_argument("--no-tuning", action="store_true", help="ignore the shipped MetaSchedule records")
    strictness = parser.add_mutually_exclusive_group()
    strictness.add_argument("--strict", action="store_true",
                            help="int8 models: fail if any conv / matmul would stay float, naming each (default)")
    strictness.add_argument("--allow-float", action="store_true",
                            help="int8 models: build even so; the report and metadata.json list them")
    parser.add_argument("--ram-budget", type=_byte_count, default=None,
                        help="bare-metal targets: SRAM the firmware may use, e.g. 1536K or 2M (default: the board's); "
                             "the link fails, saying how much is needed, when it does not fit")
    parser.add_argument("--list-targets", action="store_true", help="print the target table and exit")
    args = parser.parse_args(argv)
    if args.list_targets:
        print(format_target_table())
        return 0
    cfg = CompileConfig(target=args.target, onnx=args.onnx, out=args.out, kernels=args.kernels, build=not args.no_build,
                        tuning=not args.no_tuning, ram_budget=args.ram_budget, allow_float=args.allow_float)
    return run_command(lambda: _compile(cfg))


def _byte_count(text: str) -> int:
    """Bytes, with an optional K or M suffix (KiB, MiB)."""
    scale = {"K": 2**10, "M": 2**20}.get(text[-1:].upper(), 1)
    digits = text[:-1] if scale > 1 else text
    if not digits.isdigit() or int(digits) == 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a byte count such as 524288, 512K or 2M")
    return int(digits) * scale


def _compile(cfg: CompileConfig) -> int:
    from compile.bundle import compile_bundle  # TVM loads here, not for --list-targets
    from compile.metadata import size_report

    bundle = compile_bundle(cfg)
    print(size_report(bundle.metadata))
    print(f"bundle: {bundle.dir}" + (f"  runner: {bundle.runner}" if bundle.runner else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
