"""From the integer-lowered Relax module to TIR kernels: TVM's legalize and fusion passes, a schedule per
kernel (tuning records when shipped for the target, else an inlining schedule), and code generation as C
source or as object code through TVM's LLVM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tvm
from tvm import relax
from tvm.s_tir import Schedule, ScheduleError
from tvm.s_tir import transform as stir_transform
from tvm.s_tir.analysis import calculate_allocated_bytes

from compile.targets import CompileTarget

TUNING_DIR = Path(__file__).resolve().parent / "tuning"  # MetaSchedule records, one folder per target
KERNEL_PREFIX = "ucm_"  # global symbol of each kernel; TVM's packed wrapper is `__tvm_ffi_<symbol>`
NO_ASSERT = {"tirx.disable_assert": True}  # argument checks are ours (static shapes), not the kernels'


def fuse(mod: tvm.IRModule) -> tuple[tvm.IRModule, dict[str, int]]:
    """Legalize every Relax op to TIR and fuse them (TVM's CPU legalize passes); reshapes become views.

    Returns the fused module and the multiply-accumulates of each fused kernel, counted from the
    convolutions and matrix products each fused group holds (read before FuseTIR merges them)."""
    with tvm.target.Target({"kind": "c"}):
        grouped = tvm.transform.Sequential([
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
                macs.setdefault(value.args[0].name_hint, _call_macs(value, binding.var))
    return macs


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


def inline_elementwise(func: tvm.tirx.PrimFunc) -> tvm.tirx.PrimFunc:
    """Inline every injective block (padding, bias add, cast, rescale, ...) into its consumer or producer,
    so a fused kernel is one loop nest without whole-tensor intermediates (MetaSchedule's AutoInline, as a
    fixed rule)."""
    sch = Schedule(func)
    changed = True
    while changed:
        changed = False
        for block in sch.get_child_blocks(sch.get_sblock("root")) if _has_root(sch) else []:
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


def _has_root(sch: Schedule) -> bool:
    try:
        sch.get_sblock("root")
    except ScheduleError:
        return False
    return True


def schedule_kernels(kmod: tvm.IRModule) -> tvm.IRModule:
    return tvm.IRModule({gv: inline_elementwise(f).with_attr("global_symbol", f.attrs["global_symbol"])
                         for gv, f in kmod.functions.items()})


def workspace_bytes(kmod: tvm.IRModule) -> dict[str, int]:
    """Upper bound of the scratch memory each kernel allocates (TVMBackendAllocWorkspace or stack)."""
    lowered = tvm.transform.Sequential([
        stir_transform.LowerInitBlock(),
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
