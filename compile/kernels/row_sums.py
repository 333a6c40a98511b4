"""Per-token sums of a short int8 row (a LayerNorm's sum(q) and sum(q * q) over a token's channels) as vector
loads and one horizontal add each, through TVM's tensorize.

A norm's statistics kernel (`compile.passes.integer_norm_stats`) reduces each token's C channels (16 to 64 in
UCM-Net) to two int32 sums. LLVM vectorizes such a loop across tokens, so each vector gathers one byte from each
of 16 tokens (`vpinsrb`, one instruction per byte). The intrinsics below load a token's row contiguously,
widen it, and add its lanes with `llvm.vector.reduce.add` (a few shuffles and adds); the statistics of
LANES tokens are then computed side by side in vectors (one `vsqrtps` for 16 tokens). Integer sums, so the
values are the same. x86 A/B (`CompileTarget.row_sums`): 4096 tokens x 16 channels 0.033 -> 0.017 ms,
1024 x 24 0.0089 -> 0.0054 ms; rows of 8 stay with LLVM (16384 x 8 0.023 -> 0.030 ms this way).
"""

from __future__ import annotations

import tvm
from tvm.s_tir import Schedule, TensorIntrin
from tvm.script import tirx as T

from compile.kernels.attrs import LANES

MIN_ROW = 16  # shorter rows: LLVM's own loads across tokens measured faster (rows of 64 or more are split into
# vector partial sums before this, `compile.kernels.rules._vector_partial_sums`)
WIDTHS = (16, 8)  # int8 elements per intrinsic call, the widest that divides the row


def _row_sum_intrinsic(width: int, square: bool) -> tuple[tvm.tirx.PrimFunc, tvm.tirx.PrimFunc]:
    @T.prim_func(s_tir=True)
    def desc(A: T.Buffer((width,), "int8", offset_factor=1), C: T.Buffer((1,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:1], A[0:width])
            T.writes(C[0:1])
            for k in range(width):
                with T.sblock("update"):
                    vk = T.axis.remap("R", [k])
                    if square:
                        C[0] = C[0] + T.cast(A[vk], "int32") * T.cast(A[vk], "int32")
                    else:
                        C[0] = C[0] + T.cast(A[vk], "int32")

    @T.prim_func(s_tir=True)
    def impl(A: T.Buffer((width,), "int8", offset_factor=1), C: T.Buffer((1,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:1], A[0:width])
            T.writes(C[0:1])
            row = T.cast(A.vload([0], f"int8x{width}"), f"int32x{width}")
            C[0] = C[0] + T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.vector.reduce.add"),
                                                  row * row if square else row, dtype="int32")

    return desc, impl


def _name(width: int, square: bool) -> str:
    return f"ucm_row_sum{'_squares' if square else ''}_{width}"


for _width in WIDTHS:
    for _square in (False, True):
        TensorIntrin.register(_name(_width, _square), *_row_sum_intrinsic(_width, _square), override=True)


def _row_reduction(sch: Schedule, block) -> tuple[int, bool] | None:
    """(row length, squares?) if `block` sums the int8 values (or their squares) of one row, its only
    reduction axis innermost, of at least MIN_ROW elements in whole intrinsic widths; else None."""
    stmt = sch.get(block)
    iters = stmt.iter_vars
    loops = sch.get_loops(block)
    if (len(loops) != len(iters) or iters[-1].iter_type != tvm.tirx.IterVar.CommReduce
            or any(iv.iter_type == tvm.tirx.IterVar.CommReduce for iv in iters[:-1]) or len(stmt.reads) != 1
            or str(stmt.reads[0].source.dtype) != "int8" or str(stmt.writes[0].source.dtype) != "int32"):
        return None
    extent = int(sch.get(loops[-1]).extent)
    if extent < MIN_ROW or extent % WIDTHS[-1]:
        return None
    value = stmt.body.value.b if isinstance(stmt.body, tvm.tirx.BufferStore) else None
    return extent, isinstance(value, tvm.tirx.Mul)


def tensorize_row_sums(sch: Schedule) -> None:
    """Each block that reads only row sums (a norm's statistics): its token loop (the one loop besides the
    statistic's that is longer than 1) tiled by LANES tokens and vectorized, each sum computed per tile and
    tensorized. Kernels of another form are left as they are."""
    for consumer in sch.get_child_blocks(sch.get_sblock("root")):
        producers = sch.get_producers(consumer)
        rows = [_row_reduction(sch, p) for p in producers]
        loops = sch.get_loops(consumer)
        tokens = [lp for lp in loops if int(sch.get(lp).extent) > 1]
        if not producers or None in rows or len(tokens) != 2 or int(sch.get(tokens[1]).extent) % LANES:
            continue
        statistic, token = tokens  # [2 (mean, deviation), tokens]
        units = [lp for lp in loops if int(sch.get(lp).extent) == 1]
        outer, inner = sch.split(token, [None, LANES])
        sch.reorder(*units, outer, statistic, inner)
        sch.vectorize(inner)
        sch.unroll(statistic)
        for producer, (extent, square) in zip(producers, rows):
            sch.compute_at(producer, outer)
            sch.decompose_reduction(producer, sch.get_loops(producer)[-1])
            width = next(w for w in WIDTHS if extent % w == 0)
            _, row = sch.split(sch.get_loops(producer)[-1], [None, width])
            sch.tensorize(row, _name(width, square))
