"""Element-wise kernels that compute on an input read with a stride (a transpose from tokens [N, C] to planes
[C, H, W]): vectorized by the schedule, LANES outputs at a time, where LLVM's own vectorizer leaves the loop
scalar (`CompileTarget.strided_reads`)."""

from __future__ import annotations

import tvm
from tvm import sym
from tvm.s_tir import Schedule

from compile.kernels.attrs import LANES


def vectorize_strided_reads(sch: Schedule) -> None:
    """An element-wise block that computes on an input read with a stride along its innermost loop (a
    transpose from tokens [N, C] to planes [C, H, W]) is vectorized here, LANES outputs at a time: lane-by-lane
    loads, vector arithmetic and stores. LLVM's own vectorizer leaves such a loop scalar (A/B on this
    project's VM: the norm + residual + transpose kernels of 8 and 16 channels 0.14 -> 0.075 ms and 0.063 ->
    0.036 ms), while it turns a plain strided copy into wide loads and shuffles, better than lane-by-lane
    loads (the input image's transpose: 0.023 -> 0.044 ms if vectorized here)."""
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        loops = sch.get_loops(block)
        if not loops:
            continue
        realize = innermost_realize(sch, block)
        if (not sch.get(loops[-1]).body.same_as(realize) or int(sch.get(loops[-1]).extent) % LANES
                or any(iv.iter_type != tvm.tirx.IterVar.DataPar for iv in realize.block.iter_vars)
                or _moves_only(realize.block)):
            continue
        if _reads_with_stride(realize, sch.get(loops[-1]).loop_var):
            _, inner = sch.split(loops[-1], [None, LANES])
            sch.vectorize(inner)


def _moves_only(block: tvm.s_tir.SBlock) -> bool:
    """Does the block store a loaded value as it is (or only cast)?"""
    value = block.body.value if isinstance(block.body, tvm.tirx.BufferStore) else None
    while isinstance(value, tvm.tirx.Cast):
        value = value.value
    return isinstance(value, tvm.ir.TensorLoad)


def _reads_with_stride(realize: tvm.s_tir.SBlockRealize, loop_var: tvm.tirx.Var) -> bool:
    """Does the block read some buffer at flat offsets that do not move by 0 or 1 element per step of
    `loop_var` (the offsets simplified within the block's iteration domain)?"""
    steps = read_steps(realize, [loop_var])
    return steps is not None and any(step is None or step[0] not in (0, 1) for step in steps)


def block_var(realize: tvm.s_tir.SBlockRealize, loop_var: tvm.tirx.Var) -> tvm.tirx.Var | None:
    """The block's iteration variable bound to `loop_var` itself, if one is."""
    return next((iv.var for iv, value in zip(realize.block.iter_vars, realize.iter_values)
                 if value.same_as(loop_var)), None)


def read_steps(realize: tvm.s_tir.SBlockRealize, loop_vars: list[tvm.tirx.Var]) -> list[tuple[int, ...] | None] | None:
    """For each region the block reads, how far its flat offset moves per step of each of `loop_vars` (the
    offsets simplified within the block's iteration domain); None for a region whose offset is not linear in
    them with integer steps (a table read at a loaded value). None if some loop variable is not one of the
    block's iteration values."""
    inner = [block_var(realize, v) for v in loop_vars]
    if any(v is None for v in inner):
        return None
    analyzer = sym.Analyzer()
    for iv in realize.block.iter_vars:
        analyzer.bind(iv.var, iv.dom)
    steps = []
    for region in realize.block.reads:
        flat = 0
        for range_, extent in zip(region.region, region.source.shape):
            flat = flat * extent + range_.min
        step = sym.detect_linear_equation(analyzer.simplify(flat), inner)
        linear = step and all(isinstance(s, tvm.tirx.IntImm) for s in step[:len(inner)])
        steps.append(tuple(int(s) for s in step[:len(inner)]) if linear else None)
    return steps


def innermost_realize(sch: Schedule, block) -> tvm.s_tir.SBlockRealize:
    """The block's realization in the body of its innermost loop (alone there, or after blocks computed at
    that loop): its iteration values in terms of the loop variables."""
    body = sch.get(sch.get_loops(block)[-1]).body
    stmts = body.seq if isinstance(body, tvm.tirx.SeqStmt) else [body]
    return next(s for s in stmts if isinstance(s, tvm.s_tir.SBlockRealize) and s.block.same_as(sch.get(block)))
