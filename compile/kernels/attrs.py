"""What the compile stage's kernels agree on: their exported symbol names, the vector width schedules split
for, and the attributes a kernel written with its own schedule carries (so later steps leave it alone and
still count its multiply-accumulates)."""

from __future__ import annotations

from enum import IntEnum

import tvm


class OpPattern(IntEnum):
    """TVM's OpPatternKind, the `op_pattern` attribute FuseOps reads."""

    ELEMWISE = 0
    BROADCAST = 1
    INJECTIVE = 2
    COMM_REDUCE = 3
    OUT_EWISE_FUSABLE = 4
    OPAQUE = 8


KERNEL_PREFIX = "ucm_"  # global symbol of each kernel; TVM's packed wrapper is `__tvm_ffi_<symbol>`
LANES = 16  # vector width the schedules split for (int32 / float32: two AVX2 or four NEON registers)
SCHEDULED_ATTR = "ucm.scheduled"
MACS_ATTR = "ucm.macs"
RECOMPUTED_ATTR = "ucm.recomputed_macs"
TENSORIZED_ATTR = "ucm.tensorized"  # the mnemonic of the dot-product instruction a kernel was tensorized with


def mark_scheduled(func: tvm.tirx.PrimFunc, macs: int, recomputed: int) -> tvm.tirx.PrimFunc:
    """Mark a kernel as already scheduled, with the MACs it does (and how many of them are recomputed)."""
    return func.with_attrs({SCHEDULED_ATTR: True, MACS_ATTR: macs, RECOMPUTED_ATTR: recomputed,
                            "op_pattern": int(OpPattern.OPAQUE)})  # FuseOps leaves it alone


def is_tensorized(func: tvm.tirx.PrimFunc) -> bool:
    """Does the kernel call a CPU's dot-product instruction (so only that CPU can run it)?"""
    return func.attrs is not None and TENSORIZED_ATTR in func.attrs


def is_scheduled(func: tvm.tirx.PrimFunc) -> bool:
    return func.attrs is not None and bool(func.attrs.get(SCHEDULED_ATTR))


def recomputed_macs(kmod: tvm.IRModule) -> dict[str, int]:
    """MACs a kernel repeats on purpose (to save memory), by kernel name."""
    return {gv.name_hint: int(f.attrs[RECOMPUTED_ATTR]) for gv, f in kmod.functions.items()
            if f.attrs is not None and RECOMPUTED_ATTR in f.attrs}
