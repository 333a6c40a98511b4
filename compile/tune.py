"""python -m compile.tune --target x86_64 [--onnx PATH] [--trials N] [--per-kernel N]

MetaSchedule tuning of the model's kernels, measured on this machine (so: for the target this machine is;
tune for a board on the board). The records land in `compile/tuning/<target>/` (MetaSchedule's JSON
database), which `python -m compile` applies, so users do not retune. Records are appended as they are
measured: an interrupted run keeps what it found, and a rerun continues from them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tvm
from tvm.s_tir import meta_schedule as ms

from compile.bundle import DEFAULT_ONNX
from compile.frontend import import_onnx, is_quantized
from compile.lower_int8 import lower_int8
from compile.lower_tir import TUNING_DIR, fuse, kernel_module, tuning_target
from compile.targets import get_target


def tune(target_name: str, onnx: Path, trials: int, per_kernel: int, cores: int, all_kernels: bool) -> Path:
    target = get_target(target_name)
    mod, model = import_onnx(onnx)
    if is_quantized(model):
        mod = lower_int8(mod)
    fused, macs = fuse(mod)
    kmod = kernel_module(fused, exported=False)
    if not all_kernels:  # the convolutions and matrix products: where the time goes
        kmod = tvm.IRModule({gv: f for gv, f in kmod.functions.items() if macs.get(gv.name_hint, 0) > 0})
    work = TUNING_DIR / target.name
    work.mkdir(parents=True, exist_ok=True)
    scratch = work / "scratch"
    if trials > 0:
        ms.tune_tir(
            kmod, tuning_target(target), str(scratch), max_trials_global=trials, max_trials_per_task=per_kernel,
            num_trials_per_iter=16, num_tuning_cores=cores,
        )
    export_best(scratch, work)
    return work


def export_best(scratch: Path, work: Path) -> None:
    """Keep the best record of each tuned kernel (MetaSchedule's pruned dump) as the shipped database."""
    found = ms.database.JSONDatabase(str(scratch / "database_workload.json"),
                                     str(scratch / "database_tuning_record.json"), allow_missing=False)
    work.mkdir(parents=True, exist_ok=True)
    for name in ("database_workload.json", "database_tuning_record.json"):
        (work / name).unlink(missing_ok=True)
    shipped = ms.database.JSONDatabase(str(work / "database_workload.json"),
                                       str(work / "database_tuning_record.json"), allow_missing=True)
    found.dump_pruned(shipped)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compile.tune", description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="x86_64")
    parser.add_argument("--onnx", type=Path, default=DEFAULT_ONNX)
    parser.add_argument("--trials", type=int, default=2000, help="measurements in all (0: only export the best "
                        "records found so far)")
    parser.add_argument("--per-kernel", type=int, default=64, help="at most this many per kernel")
    parser.add_argument("--cores", type=int, default=1, help="processes building candidates")
    parser.add_argument("--all-kernels", action="store_true", help="tune every kernel, not only conv / matmul ones")
    args = parser.parse_args(argv)
    work = tune(args.target, args.onnx, args.trials, args.per_kernel, args.cores, args.all_kernels)
    print(f"records: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
