"""The schedule rules, written with TVM's schedule primitives: what a kernel gets when no MetaSchedule record
is shipped for it. Convolutions and matrix products accumulate one output row at a time; the other kernels
inline their element-wise parts and compute a reduction's consumer per element."""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm.s_tir import Schedule, ScheduleError
from tvm.s_tir.transform import StmtSimplify
from tvm.tirx.analysis import undefined_vars

from compile.kernels.attrs import LANES
from compile.kernels.padding import copy_padding_in_vectors
from compile.kernels.resize_rows import (
    compute_rows,
    has_resize,
    output_blocks,
    resize_inputs,
    resize_results,
    split_by_parity,
)
from compile.kernels.row_sums import tensorize_row_sums
from compile.kernels.strided_reads import innermost_realize, vectorize_strided_reads
from compile.kernels.transpose_tiles import transpose_in_tiles
from compile.toolchains import CompileTarget

ROW_BAND = 16  # output rows per padded band of a float depthwise input (A/B: 8 and 32 rows alike, 64 slower)


@dataclass(frozen=True)
class RuleOptions:
    """The rules' choices that depend on the target: `vectorize` (False for TVM's C code generator, which has
    no vector types), `resize_rows`, `strided_reads`, `transpose_tiles` and `row_sums` (`CompileTarget`'s,
    where they measured faster)."""

    vectorize: bool = True
    resize_rows: bool = False
    strided_reads: bool = False
    transpose_tiles: bool = False
    row_sums: bool = False

    @classmethod
    def of(cls, target: CompileTarget, vectorize: bool = True) -> RuleOptions:
        return cls(vectorize, target.resize_rows, target.strided_reads, vectorize and target.transpose_tiles,
                   vectorize and target.row_sums)


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


def schedule_epilogues_per_element(func: tvm.tirx.PrimFunc,
                                   options: RuleOptions = RuleOptions()) -> tvm.tirx.PrimFunc:
    """The rule for the other kernels: `inline_elementwise`, then a reduction's element-wise consumer
    (max-pool -> ReLU), which cannot be inlined into it, is computed right after each reduced element, so
    their intermediate is one element instead of a tensor; long reductions become vector partial sums.
    A resize's 8-bit input is computed once into a buffer; with `resize_rows`, its 8-bit result row by row
    (`compile.kernels.resize_rows`); with `transpose_tiles` and `strided_reads`, `compile.kernels.transpose_tiles`
    and `compile.kernels.strided_reads`."""
    sch = _inlined_around_resizes(func, options.vectorize and options.resize_rows)
    if not _has_root(sch):
        return sch.mod["main"]
    if options.vectorize:
        _vector_partial_sums(sch)
    if options.row_sums:
        tensorize_row_sums(sch)
    if options.transpose_tiles:  # after tensorize_row_sums: TVM's get_producers fails on a tensorized block
        sch = transpose_in_tiles(sch)
    if options.vectorize and options.strided_reads:
        vectorize_strided_reads(sch)
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
                _reductions_at(sch, consumer)
    return sch.mod["main"]


def _inlined_around_resizes(func: tvm.tirx.PrimFunc, rows: bool) -> Schedule:
    """`inline_elementwise`, except for a resize's 8-bit input and (with `rows`) its 8-bit result computed by
    rows; the result is inlined after all where it cannot be computed by rows."""
    sch = Schedule(func)
    if not _has_root(sch):
        return sch
    inputs, results = resize_inputs(sch), resize_results(sch) if rows else ()
    if results:  # kept with the output block that transposes them; index arithmetic simplified, so that each
        writers = tuple(sorted(output_blocks(sch) - set(results)))  # row's buffer is compacted to one row
        inlined = inline_elementwise(func, keep=inputs + results + writers)
        by_rows = Schedule(StmtSimplify()(tvm.IRModule({"main": inlined}))["main"])
        if compute_rows(by_rows, results):
            return by_rows
    return Schedule(inline_elementwise(func, keep=inputs))


def _reductions_at(sch: Schedule, consumer) -> None:
    """A consumer of several reductions (a variance's sum and sum of squares) cannot move under one of them:
    they all move under its innermost loop that what it reads of them depends on, so each intermediate is one
    element, not a tensor. Its loops that this does not depend on (a norm's statistics [2, ...]: the mean and
    the deviation of one group read the same sums) move inside, unrolled, so the sums are computed once."""
    producers = [p for p in sch.get_producers(consumer)
                 if any(iv.iter_type == tvm.tirx.IterVar.CommReduce for iv in sch.get(p).iter_vars)]
    loops = sch.get_loops(consumer)
    used = _loop_vars_reading(sch, consumer, producers)
    dependent = [lp for lp in loops if sch.get(lp).loop_var.name in used]
    if dependent and [sch.get(lp) for lp in dependent] != [sch.get(lp) for lp in loops[:len(dependent)]]:
        inside = [lp for lp in loops if sch.get(lp).loop_var.name not in used]
        sch.reorder(*dependent, *inside)
        for loop in inside:  # one copy per statistic: each folds its branch (no scalar sqrt for a mean)
            sch.unroll(loop)
    at = dependent[-1] if dependent else loops[-1]
    for producer in producers:
        try:
            sch.compute_at(producer, at)
        except ScheduleError:
            continue


def _loop_vars_reading(sch: Schedule, consumer, producers: list) -> set[str]:
    """Names of the loop variables of `consumer` that the indices it reads the producers' outputs at depend on."""
    realize = innermost_realize(sch, consumer)
    written = [region.source for p in producers for region in sch.get(p).writes]
    read_at = [r.min for region in sch.get(consumer).reads if any(region.source.same_as(w) for w in written)
               for r in region.region]
    block_vars = {v.name for index in read_at for v in undefined_vars(index)}
    return {v.name for iv, value in zip(realize.block.iter_vars, realize.iter_values)
            if iv.var.name in block_vars for v in undefined_vars(value)}


def schedule_accumulate_rows(func: tvm.tirx.PrimFunc, options: RuleOptions = RuleOptions()) -> tvm.tirx.PrimFunc:
    """The rule for a convolution / matrix-product kernel (after `inline_elementwise`): the reduction loops
    move inside the row loop, around the innermost output axis, and the epilogue (bias add, cast, rescale)
    runs per row. The int32 accumulator then holds one output row instead of the whole output (workspace
    from megabytes to a kilobyte), and the innermost loop runs over contiguous outputs (vectorized
    epilogue; LLVM vectorizes the accumulation). The zero padding is built per output row for the input rows
    it reads, except in a depthwise conv, which runs channel by channel and pads each input plane once (a
    float input, `compile.passes.depthwise_float`: each band of ROW_BAND output rows, copied in vectors).
    Nothing is vectorized without `options.vectorize` (TVM's C code generator: GCC vectorizes the loops)."""
    resized = options.resize_rows and has_resize(Schedule(func))
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
    lanes = next((v for v in (LANES, 8, 4) if extent % v == 0), None) if options.vectorize else None
    row, channel = spatial[-2], spatial[1] if len(spatial) == 4 else None  # NCHW: (yy, ff)
    per_channel = channel is not None and _one_input_channel(sch, block, reduce_)
    if per_channel and _float_pad(sch, pads):  # depthwise on a float input: each channel's band of rows
        band, row = sch.split(row, [None, min(ROW_BAND, int(sch.get(row).extent))])
        order, inner_most, pad_at = [spatial[0], channel, band, row], row, band
    elif per_channel:  # depthwise: channels outside rows, each channel's input padded once
        order, inner_most, pad_at = [spatial[0], channel, row], row, channel
    elif channel is not None:  # rows outside channels, so a padded input row band is built once per output row
        order, inner_most, pad_at = [spatial[0], row, channel], channel, row
    else:
        order, inner_most, pad_at = spatial[:-1], row, row
    if lanes:
        outer, _inner = sch.split(spatial[-1], [None, lanes])
        sch.reorder(*order, outer, *reduce_, _inner)
    else:
        sch.reorder(*order, *reduce_, spatial[-1])
    for consumer in consumers:
        sch.reverse_compute_at(consumer, inner_most)
    for pad in pads:  # the padded input this row (or channel) needs, not the whole padded input
        sch.compute_at(pad, pad_at)
        if lanes and _widening_pad(sch, pad):
            copy_padding_in_vectors(sch, pad, pad_at)
        if lanes and resized:  # an upsample merged into the convolution's input (merge_prologue)
            split_by_parity(sch, pad)
    if lanes:
        sch.vectorize(_inner)
    sch.decompose_reduction(block, reduce_[0])
    if lanes:
        for consumer in consumers:
            _, vector = sch.split(sch.get_loops(consumer)[-1], [None, lanes])
            sch.vectorize(vector)
    return sch.mod["main"]


def _float_pad(sch: Schedule, pads: list) -> bool:
    """Is the padded input float (`compile.passes.depthwise_float`)? Its plane would take 4x the int8 one's
    workspace (67 KB at 128x128), its bands of ROW_BAND rows take less than that."""
    return any(str(sch.get(p).writes[0].source.dtype) == "float32" for p in pads)


def _widening_pad(sch: Schedule, pad) -> bool:
    """Does the padding convert an integer input to float (`compile.passes.depthwise_float`)? Copied in vectors
    then; a float input's padding is left as it is (the float bundle, x86-64 AVX2: whole run 6.2 -> 8.1 ms with
    its paddings copied in vectors, alternating)."""
    block = sch.get(pad)
    return str(block.writes[0].source.dtype) == "float32" and str(block.reads[0].source.dtype) in ("int8", "uint8")


def _one_input_channel(sch: Schedule, block, reduce_: list) -> bool:
    """Does each output channel of this (grouped) convolution read a single input channel (depthwise)?
    Computing it row-band by row-band would pad each input row once per output row that reads it (3x for a
    3x3 kernel), channel by channel each input plane is padded once."""
    return (sch.get(block).name_hint.startswith("group_conv2d") and len(reduce_) == 3
            and int(sch.get(reduce_[0]).extent) == 1)


def _has_root(sch: Schedule) -> bool:
    try:
        sch.get_sblock("root")
    except ScheduleError:
        return False
    return True


def rule_schedule(func: tvm.tirx.PrimFunc, macs: int, options: RuleOptions = RuleOptions()) -> tvm.tirx.PrimFunc:
    """The rule for one kernel: `schedule_accumulate_rows` if it multiplies and accumulates, else
    `schedule_epilogues_per_element`; TVM's plain inlining where a loop nest does not fit the rule."""
    try:
        if macs > 0:
            return schedule_accumulate_rows(func, options)
        return schedule_epilogues_per_element(func, options)
    except ScheduleError:
        return inline_elementwise(func)
