"""python -m bench.profile --board NAME [--float] [--n N] [--repeat R] [--bundle-dir DIR] [--top K] [--json OUT]

Where the time goes on a board: builds the bundle's profiling runner (`make profile`: every kernel call
timed with the board's clock), runs it there on sample images and prints the time per kernel group and the
costliest kernels, with the board's CPU (`--float`: the float model's bundle, dist/<target>-float). On a
QEMU -icount board (mps3-an547) the counts are executed instructions (QEMU icount), deterministic and not
cycles; on Linux boards they are wall-clock nanoseconds.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench.deploy import run_on_board
from compile.build import run_make
from compile.bundle import ensure_bundle
from compile.toolchains import get_target
from targets.board import BOARDS_DIR
from targets.connect import make_transport, resolve_board
from targets.cpu import board_cpu
from targets.transport_qemu_system import icount_instructions
from ucm.data import load_images
from ucm.errors import UserError, run_command
from ucm.files import atomic_write_json
from ucm.paths import DIST, FLOAT_ONNX, INT8_ONNX, RUNS, SAMPLE_DATA

# Kernel groups by the ops TVM fused into a kernel's name, first match wins (a norm that ends in a quantize
# is a norm; a resize fused with a transpose is a resize).
GROUPS = (
    ("stem (conv, GroupNorm, pool)", ("stem",)),
    ("lookup tables (norms, GELU)", ("lookup",)),
    ("conv / matmul", ("conv2d", "matmul", "pointwise_conv")),
    ("bilinear resize (+ fused)", ("resize",)),
    ("GELU (+ fused)", ("erf",)),
    ("norms", ("mean", "variance", "norm_std", "norm_stats", "layer_norm", "sum", "sqrt", "subtract")),
    ("residual additions (int8 in, int8 out)", ("_add",)),
    ("quantize", ("quantize",)),
    ("layout and element-wise", ("transpose", "reshape", "slice", "repeat", "cast", "multiply", "divide")),
)


class ProfileError(UserError):
    """A profile that cannot be read; the message names the file."""


@dataclass(frozen=True)
class Profile:
    board: str
    cpu: str
    clock_hz: int
    runs: int  # images x repeats
    ticks: list[tuple[str, int]]  # (kernel, ticks summed over runs) per call, in call order
    runner_ticks: float  # per image, from the runner's own timing of ucm_run (median)
    icount_shift: int | None  # QEMU -icount shift: the board's clock counts instructions

    @property
    def unit(self) -> str:
        return "instructions (QEMU icount), not cycles" if self.icount_shift is not None else "ms"

    def per_image(self, ticks: float) -> float:
        """Ticks summed over all runs -> instructions or ms per image."""
        seconds = ticks / self.clock_hz / self.runs
        return icount_instructions(seconds, self.icount_shift) if self.icount_shift is not None else seconds * 1e3


def kernel_group(kernel: str) -> str:
    return next((group for group, keys in GROUPS if any(k in kernel for k in keys)), "other")


def read_profile(path: Path) -> tuple[int, int, list[tuple[str, int]]]:
    """(clock_hz, runs, [(kernel, ticks)]) of a runner's profile.tsv."""
    lines = path.read_text().splitlines()
    head = lines[0].split() if lines else []
    if len(head) != 5 or head[:2] != ["#", "clock_hz"] or head[3] != "runs":
        raise ProfileError(f"{path}: not a ucm-edge profile (first line '# clock_hz N runs R' missing)")
    rows = [line.split("\t") for line in lines[2:] if line]
    return int(head[2]), int(head[4]), [(kernel, int(ticks)) for _, kernel, ticks in rows]


def profile_board(board_name: str, n: int = 2, repeat: int = 1, bundle_dir: Path | None = None,
                  out: Path | None = None, boards_dir: Path = BOARDS_DIR, host: str | None = None,
                  emulate: bool = False, trust_new_host: bool = False, float_model: bool = False) -> Profile:
    board, emulated = resolve_board(board_name, boards_dir, host, emulate)
    target = get_target(board.target)
    suffix = "-float" if float_model else ""
    bundle_dir = bundle_dir or DIST / f"{board.target}{suffix}"
    out = out or RUNS / f"profile-{board.name}{suffix}"
    meta = ensure_bundle(board.target, FLOAT_ONNX if float_model else INT8_ONNX, bundle_dir)
    run_make(bundle_dir, target, ["profile"])
    runner = bundle_dir / target.profiled_runner
    names, images = load_images(SAMPLE_DATA, meta["input"]["height"], n)
    transport = make_transport(board, emulated, out / "board_work", trust_new_host)
    try:
        cpu = board_cpu(transport, emulated, board.ssh.connect_timeout_s)
        result = run_on_board(transport, runner, names, images, out, chunk=len(names),
                              timeout_s=board.ssh.command_timeout_s, progress=False, repeat=repeat)
        transport.get(transport.work_dir / "out" / "profile.tsv", out / "profile.tsv")
    finally:
        transport.close()
    clock_hz, runs, ticks = read_profile(out / "profile.tsv")
    if runs != len(names) * repeat:
        raise ProfileError(f"{out / 'profile.tsv'}: {runs} runs, expected {len(names) * repeat}: rerun the command")
    runner_ticks = sorted(result.micros)[len(result.micros) // 2] * clock_hz / 1e6
    return Profile(board.name, cpu, clock_hz, runs, ticks, runner_ticks, transport.icount_shift)


def format_profile(profile: Profile, top: int = 10) -> str:
    groups: dict[str, list[int]] = defaultdict(list)
    kernels: dict[str, int] = defaultdict(int)
    for kernel, ticks in profile.ticks:
        groups[kernel_group(kernel)].append(ticks)
        kernels[kernel] += ticks
    total = sum(t for _, t in profile.ticks)
    fmt = (lambda v: f"{v / 1e6:12.2f}") if profile.icount_shift is not None else (lambda v: f"{v:12.3f}")
    unit = "M instr." if profile.icount_shift is not None else "ms"
    lines = [f"profile of board {profile.board}: {profile.runs} runs; per image, {profile.unit}",
             f"board CPU: {profile.cpu}",
             f"{'group':32s} {'calls':>5s} {unit + '/image':>12s} {'share':>7s}"]
    for group, ticks in sorted(groups.items(), key=lambda kv: -sum(kv[1])):
        lines.append(f"{group:32s} {len(ticks):5d} {fmt(profile.per_image(sum(ticks)))} {100 * sum(ticks) / total:6.1f}%")
    lines.append(f"{'all kernel calls':32s} {len(profile.ticks):5d} {fmt(profile.per_image(total))} {100.0:6.1f}%")
    lines.append(f"{'ucm_run as the runner timed it':32s} {'':5s} "
                 f"{fmt(profile.per_image(profile.runner_ticks * profile.runs))}")
    lines.append(f"top {top} kernels:")
    for kernel, ticks in sorted(kernels.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {kernel[:60]:60s} {fmt(profile.per_image(ticks))} {100 * ticks / total:6.1f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[1].split("\n")[0])
    parser.add_argument("--board", required=True, help="a board name (python -m targets list) or a board TOML file")
    parser.add_argument("--float", dest="float_model", action="store_true",
                        help="profile the float model's bundle (dist/<target>-float) instead of the int8 one")
    parser.add_argument("--n", type=int, default=2, help="sample images to run (default 2)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per image (default 1; QEMU icount needs no more)")
    parser.add_argument("--bundle-dir", type=Path, default=None, help="bundle folder (default dist/<target>[-float])")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default runs/profile-<board>)")
    parser.add_argument("--host", default=None, help="USER@HOST[:PORT] of the board (overrides its TOML)")
    parser.add_argument("--emulate", action="store_true", help="run under QEMU even if the board has a host")
    parser.add_argument("--trust-new-host", action="store_true", help="accept and record an unknown SSH host key")
    parser.add_argument("--top", type=int, default=10, help="how many kernels to list")
    parser.add_argument("--json", type=Path, default=None, help="also write the profile here")
    args = parser.parse_args(argv)
    return run_command(lambda: _profile(args))


def _profile(args: argparse.Namespace) -> int:
    profile = profile_board(args.board, args.n, args.repeat, args.bundle_dir, args.out, host=args.host,
                            emulate=args.emulate, trust_new_host=args.trust_new_host, float_model=args.float_model)
    print(format_profile(profile, args.top))
    if args.json:
        atomic_write_json(args.json, {**profile.__dict__, "unit": profile.unit,
                                      "per_image_total": profile.per_image(sum(t for _, t in profile.ticks))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
