"""Kernel code generation (TVM's C source or TVM's LLVM object code) and each kernel's scratch memory."""

from __future__ import annotations

from pathlib import Path

import tvm
from tvm.s_tir import transform as stir_transform
from tvm.s_tir.analysis import calculate_allocated_bytes

NO_ASSERT = {"tirx.disable_assert": True}  # argument checks are ours (static shapes), not the kernels
HOST_LLVM = {"kind": "llvm"}  # no triple: LLVM's default, the machine the compiler runs on


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


def _int32_indices(kmod: tvm.IRModule) -> tvm.IRModule:
    """Index arithmetic in int32 instead of the int64 TVM's legalization writes (costly on 32-bit cores), in
    every kernel whose buffers are not int64 themselves (TVM's ForceNarrowIndexToInt32 refuses those)."""
    narrow = tvm.tirx.transform.ForceNarrowIndexToInt32()
    functions = {}
    for gv, func in kmod.functions.items():
        if all(str(p.dtype) != "int64" for p in func.params):
            func = narrow(tvm.IRModule({gv: func}))[gv]
        functions[gv] = func
    return tvm.IRModule(functions, attrs=kmod.attrs)


def build_kernels(kmod: tvm.IRModule, tvm_target: dict, out: Path) -> Path:
    """Generate the kernels: `kernels.c` for `{"kind": "c"}`, else an object file `kernels.o` from LLVM. TVM's C
    code generator has no vector types: vectorized loops (of the rewrites' own schedules) become plain loops
    there, which GCC vectorizes."""
    config = {**NO_ASSERT, "tirx.disable_vectorize": tvm_target["kind"] == "c"}
    with tvm.transform.PassContext(opt_level=3, config=config):
        kmod = _int32_indices(kmod)
        lib = tvm.tirx.build(kmod, target=tvm.target.Target(tvm_target))
    if tvm_target["kind"] == "c":
        path = out / "kernels.c"
        path.write_text(lib.inspect_source())
    else:
        path = out / "kernels.o"
        lib.write_to_file(str(path))
    return path
