"""From the integer-lowered Relax module to TIR kernels: TVM's legalize and fusion passes, a schedule per
kernel (MetaSchedule records when shipped for the target, else schedule rules written with TVM's schedule
primitives), and code generation as C source or as object code through TVM's LLVM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tvm
from tvm import relax
from tvm.s_tir import Schedule, ScheduleError
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir import transform as stir_transform
from tvm.s_tir.analysis import calculate_allocated_bytes

from compile.targets import CompileTarget

TUNING_DIR = Path(__file__).resolve().parent / "tuning"  # MetaSchedule records, one folder per target
KERNEL_PREFIX = "ucm_"  # global symbol of each kernel; TVM's packed wrapper is `__tvm_ffi_<symbol>`
LANES = 16  # vector width the rules split for (int32 / float32: two AVX2 or four NEON registers)
NO_ASSERT = {"tirx.disable_assert": True}  # argument checks are ours (static shapes), not the kernels


def fuse(mod: tvm.IRModule) -> tuple[tvm.IRModule, dict[str, int]]:
    """Legalize every Relax op to TIR and fuse them (TVM's CPU legalize passes); reshapes become views.

    Returns the fused module and the multiply-accumulates of each fused kernel, counted from the
    convolutions and matrix products each fused group holds (read before FuseTIR merges them)."""
    with tvm.target.Target({"kind": "c"}):
        grouped = tvm.transform.Sequential([
            relax.transform.FastMathTransform(),  # erf / exp / tanh as TOPI's vectorizable approximations
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
        ])(mod)
        macs = _fused_macs(grouped)
        fused = tvm.transform.Sequential([
            relax.transform.FuseTIR(),
            relax.transform.RewriteDataflowReshape(),
            relax.transform.DeadCodeElimination(),
        ])(grouped)
    return fused, macs


def _shape(expr: relax.Expr) -> tuple[int, ...]:
    return tuple(int(d) for d in expr.ty.shape.values)


def _call_macs(call: relax.Call, result: relax.Var) -> int:
    """MACs of a legalized conv2d / matmul call_tir (0 for any other kernel)."""
    kernel = call.args[0].name_hint
    args = call.args[1].fields
    out = int(np.prod(_shape(result), dtype=np.int64))
    if "conv2d" in kernel:
        weight = _shape(args[1])
        return out * int(np.prod(weight[1:], dtype=np.int64))
    if kernel.startswith("matmul"):
        return out * _shape(args[0])[-1]
    return 0


def _fused_macs(grouped: tvm.IRModule) -> dict[str, int]:
    macs: dict[str, int] = {}
    for gv, func in grouped.functions.items():
        if not isinstance(func, relax.Function) or gv.name_hint == "main":
            continue
        total = 0
        for block in func.body.blocks:
            for binding in block.bindings:
                value = binding.value
                if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name == "relax.call_tir":
                    total += _call_macs(value, binding.var)
        macs[gv.name_hint] = total
    main = grouped["main"]
    for block in main.body.blocks:  # kernels left unfused are called from main directly
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name == "relax.call_tir":
                callee = grouped[value.args[0]]
                known = callee.attrs.get("ucm.macs") if callee.attrs is not None else None
                macs.setdefault(value.args[0].name_hint, int(known) if known is not None else _call_macs(value, binding.var))
    return macs


def mark_scheduled(func: tvm.tirx.PrimFunc, macs: int, recomputed: int) -> tvm.tirx.PrimFunc:
    """Mark a kernel as already scheduled, with the MACs it does (and how many of them are recomputed)."""
    return func.with_attrs({"ucm.scheduled": True, "ucm.macs": macs, "ucm.recomputed_macs": recomputed,
                            "op_pattern": 8})  # kOpaque: FuseOps leaves it alone


def with_new_main(builder: relax.BlockBuilder, main: relax.Function) -> tvm.IRModule:
    """The module a rewrite built: `builder` (made from the original module, holding the kernels the rewrite
    added) with `main` replaced by the rewritten one."""
    out = builder.get()
    out[out.get_global_var("main")] = main
    return relax.transform.Normalize()(out)


def recomputed_macs(kmod: tvm.IRModule) -> dict[str, int]:
    """MACs a kernel repeats on purpose (to save memory), by kernel name."""
    return {gv.name_hint: int(f.attrs["ucm.recomputed_macs"]) for gv, f in kmod.functions.items()
            if f.attrs is not None and "ucm.recomputed_macs" in f.attrs}


def kernel_module(mod: tvm.IRModule, exported: bool = True) -> tvm.IRModule:
    """The fused module's PrimFuncs; `exported`: each under the global symbol `ucm_<name>`."""
    funcs = {}
    for gv, func in mod.functions.items():
        if isinstance(func, tvm.tirx.PrimFunc):
            funcs[gv.name_hint] = func.with_attr("global_symbol", KERNEL_PREFIX + gv.name_hint) if exported else func
    return tvm.IRModule(funcs)


def tuning_target(target: CompileTarget) -> tvm.target.Target:
    """The LLVM target MetaSchedule tunes and looks records up for (one core: boards run one thread)."""
    return tvm.target.Target({**target.llvm, "num-cores": 1})


def inline_elementwise(func: tvm.tirx.PrimFunc, keep: tuple[str, ...] = ()) -> tvm.tirx.PrimFunc:
    """Inline every injective block (padding, bias add, cast, rescale, ...) into its consumer or producer,
    so a fused kernel is one loop nest without whole-tensor intermediates (MetaSchedule's AutoInline, as a
    fixed rule). Blocks named in `keep` stay."""
    sch = Schedule(func)
    changed = True
    while changed:
        changed = False
        for block in sch.get_child_blocks(sch.get_sblock("root")) if _has_root(sch) else []:
            if sch.get(block).name_hint in keep:
                continue
            for inline in (sch.compute_inline, sch.reverse_compute_inline):
                try:
                    inline(block)
                except ScheduleError:
                    continue
                changed = True
                break
            if changed:
                break
    return sch.mod["main"]


def _vector_partial_sums(sch: Schedule) -> None:
    """Long reductions (a norm's mean and variance over a whole plane) as LANES independent partial sums
    (TVM's rfactor) in one vector, added up at the end: the sequential add chain was their bottleneck."""
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        iters = sch.get(block).iter_vars
        loops = sch.get_loops(block)
        if len(loops) != len(iters) or iters[-1].iter_type != tvm.tirx.IterVar.CommReduce:
            continue
        extent = int(sch.get(loops[-1]).extent)
        if extent < 4 * LANES or extent % LANES:
            continue
        try:
            _, inner = sch.split(loops[-1], [None, LANES])
            partial = sch.rfactor(inner, 0)
            sch.vectorize(sch.get_loops(partial)[-1])
        except ScheduleError:
            continue


def schedule_epilogues_per_element(func: tvm.tirx.PrimFunc, vectorize: bool = True) -> tvm.tirx.PrimFunc:
    """The rule for the other kernels: `inline_elementwise`, then a reduction's element-wise consumer
    (max-pool -> ReLU), which cannot be inlined into it, is computed right after each reduced element, so
    their intermediate is one element instead of a tensor; long reductions become vector partial sums."""
    sch = Schedule(inline_elementwise(func))
    if not _has_root(sch):
        return sch.mod["main"]
    if vectorize:
        _vector_partial_sums(sch)
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        iters = sch.get(block).iter_vars
        if not any(iv.iter_type == tvm.tirx.IterVar.CommReduce for iv in iters):
            continue
        loops = sch.get_loops(block)
        spatial = [lp for lp, iv in zip(loops, iters) if iv.iter_type == tvm.tirx.IterVar.DataPar]
        if not spatial or len(loops) != len(iters):
            continue
        for consumer in sch.get_consumers(block):
            try:
                sch.reverse_compute_at(consumer, spatial[-1])
            except ScheduleError:
                continue
    return sch.mod["main"]


def schedule_accumulate_rows(func: tvm.tirx.PrimFunc, vectorize: bool = True) -> tvm.tirx.PrimFunc:
    """The rule for a convolution / matrix-product kernel (after `inline_elementwise`): the reduction loops
    move inside the row loop, around the innermost output axis, and the epilogue (bias add, cast, rescale)
    runs per row. The int32 accumulator then holds one output row instead of the whole output (workspace
    from megabytes to a kilobyte), and the innermost loop runs over contiguous outputs (vectorized
    epilogue; LLVM vectorizes the accumulation). `vectorize=False` for TVM's C code generator, which has no
    vector types (GCC auto-vectorizes the same loops)."""
    sch = Schedule(inline_elementwise(func, keep=("pad_temp",)))
    children = sch.get_child_blocks(sch.get_sblock("root"))
    pads = [b for b in children if sch.get(b).name_hint == "pad_temp"]
    reductions = [b for b in children
                  if any(iv.iter_type == tvm.tirx.IterVar.CommReduce for iv in sch.get(b).iter_vars)]
    if len(reductions) != 1:
        return sch.mod["main"]
    block = reductions[0]
    consumers = sch.get_consumers(block)
    loops = sch.get_loops(block)
    kinds = [iv.iter_type for iv in sch.get(block).iter_vars]
    spatial = [lp for lp, k in zip(loops, kinds) if k == tvm.tirx.IterVar.DataPar]
    reduce_ = [lp for lp, k in zip(loops, kinds) if k == tvm.tirx.IterVar.CommReduce]
    if len(spatial) < 2 or not reduce_ or len(spatial) + len(reduce_) != len(loops):
        return sch.mod["main"]
    extent = int(sch.get(spatial[-1]).extent)
    lanes = next((v for v in (LANES, 8, 4) if extent % v == 0), None) if vectorize else None
    row, channel = spatial[-2], spatial[1] if len(spatial) == 4 else None  # NCHW: (yy, ff)
    # NCHW: rows outside channels, so a padded input row band is built once per output row.
    order = [spatial[0], row, channel] if channel is not None else spatial[:-1]
    inner_most = channel if channel is not None else row
    if lanes:
        outer, _inner = sch.split(spatial[-1], [None, lanes])
        sch.reorder(*order, outer, *reduce_, _inner)
    else:
        sch.reorder(*order, *reduce_, spatial[-1])
    for consumer in consumers:
        sch.reverse_compute_at(consumer, inner_most)
    for pad in pads:  # the padded input rows this output row needs, not the whole padded input
        sch.compute_at(pad, row)
    if lanes:
        sch.vectorize(_inner)
    sch.decompose_reduction(block, reduce_[0])
    if lanes:
        for consumer in consumers:
            _, vector = sch.split(sch.get_loops(consumer)[-1], [None, lanes])
            sch.vectorize(vector)
    return sch.mod["main"]


def _has_root(sch: Schedule) -> bool:
    try:
        sch.get_sblock("root")
    except ScheduleError:
        return False
    return True


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
        if func.attrs.get("ucm.scheduled"):  # written with its schedule (compile.recompute_groupnorm)
            scheduled[gv] = func
            continue
        sch = None
        if database is not None:
            sch = database.query_schedule(tuning_key(func.without_attr("global_symbol")), tvm_target, workload_name="main")
        if sch is not None:
            tuned += 1
            scheduled[gv] = sch.mod["main"].with_attr("global_symbol", symbol)
        else:
            try:
                if macs.get(gv.name_hint, 0) > 0:
                    rule = schedule_accumulate_rows(func, vectorize)
                else:
                    rule = schedule_epilogues_per_element(func, vectorize)
            except ScheduleError:  # a loop nest the rule does not fit: TVM's plain inlining
                rule = inline_elementwise(func)
            scheduled[gv] = rule.with_attr("global_symbol", symbol)
    return tvm.IRModule(scheduled), tuned


def workspace_bytes(kmod: tvm.IRModule) -> dict[str, int]:
    """Upper bound of the scratch memory each kernel allocates (TVMBackendAllocWorkspace or stack)."""
    lowered = tvm.transform.Sequential([
        stir_transform.LowerInitBlock(),
        stir_transform.PlanAndUpdateBufferAllocationLocation(),
        stir_transform.ConvertBlocksToOpaque(),
        stir_transform.CompactBufferAllocation(),
        stir_transform.LowerOpaqueBlock(),
    ])(kmod)
    sizes = calculate_allocated_bytes(lowered)
    return {name: int(sum(scopes.values())) for name, scopes in sizes.items()}


def build_kernels(kmod: tvm.IRModule, tvm_target: dict, out: Path) -> Path:
    """Generate the kernels: `kernels.c` for `{"kind": "c"}`, else an object file `kernels.o` from LLVM."""
    with tvm.transform.PassContext(opt_level=3, config=NO_ASSERT):
        lib = tvm.tirx.build(kmod, target=tvm.target.Target(tvm_target))
    if tvm_target["kind"] == "c":
        path = out / "kernels.c"
        path.write_text(lib.inspect_source())
    else:
        path = out / "kernels.o"
        lib.write_to_file(str(path))
    return path
