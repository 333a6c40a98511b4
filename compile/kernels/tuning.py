"""Each kernel's schedule: the MetaSchedule record shipped for the target (`compile/tuning/<target>/`, written
by `python -m compile.tune`) where there is one, else the schedule rule (`compile.kernels.rules`)."""

from __future__ import annotations

from pathlib import Path

import tvm
from tvm.s_tir import meta_schedule as ms

from compile.config import TUNING_DIR
from compile.kernels.attrs import is_scheduled
from compile.kernels.rules import RuleOptions, rule_schedule
from compile.toolchains import CompileTarget


def tuning_target(target: CompileTarget) -> tvm.target.Target:
    """The LLVM target MetaSchedule tunes and looks records up for (one core: boards run one thread)."""
    return tvm.target.Target({**target.llvm, "num-cores": 1})


def tuning_database(target: CompileTarget, tuning_dir: Path = TUNING_DIR) -> ms.Database | None:
    """The MetaSchedule records shipped for this target (`python -m compile.tune` writes them), if any."""
    folder = tuning_dir / target.name
    workloads, records = folder / "database_workload.json", folder / "database_tuning_record.json"
    if not (workloads.is_file() and records.is_file()):
        return None
    return ms.database.JSONDatabase(str(workloads), str(records), allow_missing=False)


def tuning_key(func: tvm.tirx.PrimFunc) -> tvm.IRModule:
    """The module MetaSchedule tuned for this kernel (as `tune_tir` normalizes a task's function)."""
    return tvm.IRModule({"main": func.with_attr("global_symbol", "main").with_attr("tirx.noalias", True)})


def schedule_kernels(kmod: tvm.IRModule, database: ms.Database | None, target: CompileTarget,
                     macs: dict[str, int], vectorize: bool = True) -> tuple[tvm.IRModule, int]:
    """Each kernel scheduled by its tuning record when the database has one, else by a rule:
    `schedule_accumulate_rows` for convolutions / matrix products, `inline_elementwise` for the rest.
    Returns the scheduled module and how many kernels used a tuning record."""
    scheduled, tuned = {}, 0
    tvm_target = tuning_target(target)
    for gv, func in kmod.functions.items():
        symbol = func.attrs["global_symbol"]
        if is_scheduled(func):  # written with its own schedule (compile.passes.recompute_groupnorm)
            scheduled[gv] = func
            continue
        sch = None
        if database is not None:
            sch = database.query_schedule(tuning_key(func.without_attr("global_symbol")), tvm_target, workload_name="main")
        if sch is not None:
            tuned += 1
            scheduled[gv] = sch.mod["main"].with_attr("global_symbol", symbol)
        else:
            rule = rule_schedule(func, macs.get(gv.name_hint, 0), RuleOptions.of(target, vectorize))
            scheduled[gv] = rule.with_attr("global_symbol", symbol)
    return tvm.IRModule(scheduled), tuned
