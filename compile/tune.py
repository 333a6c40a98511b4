"""python -m compile.tune --target x86_64 [--onnx PATH] [--trials N] [--per-kernel N]

MetaSchedule tuning of the model's kernels, measured on this machine (so: for the target this machine is;
tune for a board on the board). The records land in `compile/tuning/<target>/` (MetaSchedule's JSON
database), which `python -m compile` applies, so users do not retune. Records are appended as they are
measured: an interrupted run keeps what it found, and a rerun continues from them.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import tvm
from tvm.s_tir import meta_schedule as ms

from compile.config import DEFAULT_ONNX, TUNING_DIR, CompileConfig
from compile.errors import CompileError
from compile.kernels.attrs import is_scheduled
from compile.kernels.codegen import NO_ASSERT
from compile.kernels.fusion import kernel_module
from compile.kernels.rules import RuleOptions, rule_schedule
from compile.kernels.tuning import tuning_key, tuning_target
from compile.pipeline import lower_to_kernels
from compile.toolchains import CompileTarget, get_target
from ucm.errors import run_command


# what MetaSchedule needs beyond the compiler (the `tune` extra): its XGBoost cost model, its local workers
TUNING_MODULES = ("xgboost", "psutil", "cloudpickle")


def require_tuning_packages() -> None:
    """Fail before minutes of lowering and tuning, not after the first round's measurements."""
    missing = [name for name in TUNING_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise CompileError(f"python -m compile.tune needs {', '.join(missing)} (MetaSchedule's cost model and "
                           "workers): install them with 'pip install -e \".[tune]\"'")


def tune(cfg: CompileConfig, trials: int, per_kernel: int, cores: int, all_kernels: bool) -> Path:
    """Tune the kernels `python -m compile` would build for `cfg` (the same lowering, the same rewrites)."""
    if trials > 0:
        require_tuning_packages()
    target = get_target(cfg.target)
    lowered = lower_to_kernels(cfg, print)
    macs = lowered.kernel_macs
    kmod = kernel_module(lowered.fused, exported=False)
    kmod = tvm.IRModule({gv: f for gv, f in kmod.functions.items() if not is_scheduled(f)})  # own schedules
    if not all_kernels:  # the convolutions and matrix products: where the time goes
        kmod = tvm.IRModule({gv: f for gv, f in kmod.functions.items() if macs.get(gv.name_hint, 0) > 0})
    work = cfg.tuning_dir / target.name
    work.mkdir(parents=True, exist_ok=True)
    scratch = work / "scratch"
    if trials > 0:
        ms.tune_tir(
            kmod, tuning_target(target), str(scratch), max_trials_global=trials, max_trials_per_task=per_kernel,
            num_trials_per_iter=16, num_tuning_cores=cores,
        )
    kept = export_best(scratch, work, kmod, target, macs)
    print(f"{kept} records beat the schedule rules and are shipped in {work}")
    return work


def _random_args(func: tvm.tirx.PrimFunc, rng: np.random.Generator) -> list[tvm.runtime.Tensor]:
    args = []
    for param in func.params:  # TVM 0.27: a PrimFunc's parameters carry their buffer's shape and dtype
        shape, dtype = tuple(int(d) for d in param.shape), str(param.dtype)
        value = rng.normal(size=shape) if dtype.startswith("float") else rng.integers(-50, 50, shape)
        args.append(tvm.runtime.tensor(value.astype(dtype)))
    return args


def kernel_ms(func: tvm.tirx.PrimFunc, target: tvm.target.Target, rng: np.random.Generator) -> float:
    """Best-of-3 time of one kernel on this machine."""
    func = func.with_attr("global_symbol", "kernel")
    with tvm.transform.PassContext(opt_level=3, config=NO_ASSERT):
        lib = tvm.tirx.build(tvm.IRModule({"kernel": func}), target=target)
    timer = lib.time_evaluator("kernel", tvm.cpu(), number=10, repeat=3)
    return min(timer(*_random_args(func, rng)).results) * 1e3


def export_best(scratch: Path, work: Path, kmod: tvm.IRModule, target: CompileTarget, macs: dict[str, int]) -> int:
    """Ship, of each tuned kernel, its best record if it beats the schedule rule the compiler would use
    otherwise (both timed here, the machine tuned for). Returns how many records were kept."""
    found = ms.database.JSONDatabase(str(scratch / "database_workload.json"),
                                     str(scratch / "database_tuning_record.json"), allow_missing=False)
    work.mkdir(parents=True, exist_ok=True)
    for name in ("database_workload.json", "database_tuning_record.json"):
        (work / name).unlink(missing_ok=True)
    shipped = ms.database.JSONDatabase(str(work / "database_workload.json"),
                                       str(work / "database_tuning_record.json"), allow_missing=True)
    llvm, rng, kept = tuning_target(target), np.random.default_rng(0), 0
    for gv, func in kmod.functions.items():
        key = tuning_key(func)
        if not found.has_workload(key):
            continue
        records = found.get_top_k(found.commit_workload(key), 1)
        if not records:
            continue
        tuned = found.query_schedule(key, llvm, workload_name="main").mod["main"]
        rule = rule_schedule(func, macs.get(gv.name_hint, 0), RuleOptions.of(target))
        t_tuned, t_rule = kernel_ms(tuned, llvm, rng), kernel_ms(rule, llvm, rng)
        verdict = "kept" if t_tuned < 0.95 * t_rule else "dropped"
        print(f"{gv.name_hint:48s} tuned {t_tuned:7.3f} ms  rule {t_rule:7.3f} ms  {verdict}")
        if verdict == "kept":
            record = records[0]
            workload = shipped.commit_workload(key)
            shipped.commit_tuning_record(ms.database.TuningRecord(
                record.trace, workload, record.run_secs, record.target, record.args_info))
            kept += 1
    if not kept:  # no empty database: `python -m compile` would report and fingerprint records that are none
        for name in ("database_workload.json", "database_tuning_record.json"):
            (work / name).unlink(missing_ok=True)
    return kept


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
    cfg = CompileConfig(target=args.target, onnx=args.onnx, tuning_dir=TUNING_DIR)
    return run_command(lambda: _tune(cfg, args))


def _tune(cfg: CompileConfig, args: argparse.Namespace) -> int:
    work = tune(cfg, args.trials, args.per_kernel, args.cores, args.all_kernels)
    print(f"records: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
