"""Element-wise kernels that read int8 planes [C, H, W] as tokens [H*W, C] (UCM-Net's residual additions,
GELU lookups and transposed copies): the planes read in tiles, each transposed in vector registers by a tensor
intrinsic (`CompileTarget.transpose_tiles`).

Read in place, a token's C channels are C bytes one plane apart: loaded byte by byte, each load inserted into
the vector after the one before. Where the planes are a multiple of 4 KiB apart and C is above 8, the lines
also evict each other from the L1 cache (all in one set). There, the kernel first copies TILE tokens of all
channels into a small buffer laid out as tokens (TVM's `cache_read` and `transform_layout`). That copy is
tensorized: one vector load of TILE bytes per channel, 4 rounds of byte interleaves (vector i with vector
i + 8: x86 `punpcklbw` / `punpckhbw`), one vector store per token. The kernel then computes on contiguous
channels, in vectors (a lookup's table reads stay scalar).

x86-64 AVX2 on an AMD EPYC, single-kernel A/B, bit-identical: the 16-channel 64x64 kernels, residual addition
0.094 -> 0.039 ms, GELU lookup 0.111 -> 0.055 ms, transposed copy 0.078 -> 0.016 ms. Where the lines do not
evict each other the tiles were slower (8 channels at 128x128: lookup 0.095 -> 0.107 ms; 32 at 16x16: 0.0036
-> 0.0055 ms), so those kernels are left to the other rules.
"""

from __future__ import annotations

import tvm
from tvm.s_tir import Schedule, ScheduleError, TensorIntrin
from tvm.script import tirx as T

from compile.kernels.strided_reads import block_var, innermost_realize, read_steps

TILE = 16  # tokens and channels per tile: one 16-byte vector of each of 16 planes
# an L1 data cache of 64 sets of 64-byte lines, 8 ways or more (x86-64 since Sandy Bridge / Zen: 32 KiB 8-way,
# 48 KiB 12-way): addresses a multiple of 4 KiB apart share a set, and more than 8 such lines evict each other
L1_WAY_BYTES, L1_WAYS = 4096, 8
INTRINSIC = f"ucm_transpose_{TILE}x{TILE}_i8"


def _description() -> tvm.tirx.PrimFunc:
    """B[j, i] = A[i, 0, j]: TILE channel rows of TILE pixels (the unit axis: the image row they lie in)."""

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle) -> None:
        A = T.match_buffer(a, (TILE, 1, TILE), "int8", offset_factor=1)
        B = T.match_buffer(b, (TILE, TILE), "int8", offset_factor=1)
        with T.sblock("root"):
            T.reads(A[0:TILE, 0, 0:TILE])
            T.writes(B[0:TILE, 0:TILE])
            for i, j in T.grid(TILE, TILE):
                with T.sblock("transpose"):
                    vi, vj = T.axis.remap("SS", [i, j])
                    B[vj, vi] = A[vi, 0, vj]

    return desc


def _interleave_network() -> tuple[list[str], list[str]]:
    """TVMScript lines that take TILE vectors of TILE bytes, r0.., through log2(TILE) rounds of byte
    interleaves (vector i with vector i + TILE/2, low and high halves), and the names of the vectors out: the
    transpose's rows."""
    names, lines = [f"r{i}" for i in range(TILE)], []
    for round_ in range(TILE.bit_length() - 1):
        out = []
        for i in range(TILE // 2):
            for half in (0, 1):
                lanes = [k + TILE * side for k in range(half * TILE // 2, (half + 1) * TILE // 2) for side in (0, 1)]
                out.append(f"s{round_}_{len(out)}")
                lines.append(f"{out[-1]} = T.Shuffle([{names[i]}, {names[i + TILE // 2]}], {lanes})")
        names = out
    return lines, names


def _implementation() -> tvm.tirx.PrimFunc:
    """The description as TILE vector loads, the byte interleaves (`T.Shuffle`) and TILE vector stores."""
    lines, result = _interleave_network()
    body = [f"r{i} = A.vload([{i}, 0, 0], 'int8x{TILE}')" for i in range(TILE)] + lines
    body += [f"B[{k}, T.ramp(0, 1, {TILE})] = {name}" for k, name in enumerate(result)]
    source = "\n".join([
        "@T.prim_func(s_tir=True)",
        "def impl(a: T.handle, b: T.handle) -> None:",
        f"    A = T.match_buffer(a, ({TILE}, 1, {TILE}), 'int8', offset_factor=1, strides=[T.int32(), T.int32(), 1])",
        f"    B = T.match_buffer(b, ({TILE}, {TILE}), 'int8', offset_factor=1, strides=[T.int32(), 1])",
        "    with T.sblock('root'):",
        f"        T.reads(A[0:{TILE}, 0, 0:{TILE}])",
        f"        T.writes(B[0:{TILE}, 0:{TILE}])",
        *(f"        {line}" for line in body),
    ]) + "\n"
    return tvm.script.from_source(source, extra_vars={"T": T})


TensorIntrin.register(INTRINSIC, _description(), _implementation(), override=True)


def transpose_in_tiles(sch: Schedule) -> Schedule:
    """Each element-wise block of loops [..., tokens, channels] that reads one int8 input as planes (a step
    of 1 along tokens, another along channels) reads it through tiles transposed by the intrinsic; its channel
    loop is vectorized unless it also reads at an index that is not linear in its loops (a lookup table).
    Returns the schedule with the blocks where this applies done (each tried on a copy, indices in int32)."""
    for name in [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]:
        block = sch.get_sblock(name)
        loops = sch.get_loops(block)
        if len(loops) < 2 or any(iv.iter_type != tvm.tirx.IterVar.DataPar for iv in sch.get(block).iter_vars):
            continue
        if int(sch.get(loops[-1]).extent) % TILE or int(sch.get(loops[-2]).extent) % TILE:
            continue
        source = _planes_read(sch, block, loops[-2], loops[-1])
        if source is None:
            continue
        try:
            trial = _int32_indices(sch)
            _tile(trial, trial.get_sblock(name), *source)
        except ScheduleError:
            continue
        sch = trial
    return sch


def _int32_indices(sch: Schedule) -> Schedule:
    """A copy of the schedule's function with int32 indices: `compile.kernels.codegen` narrows the int64
    indices of TVM's legalization at build time, which fails on a tensorized block's int64 buffer views."""
    return Schedule(tvm.tirx.transform.ForceNarrowIndexToInt32()(sch.mod)["main"])


def _tile(sch: Schedule, block, index: int, channel_dim: int, vectorize: bool) -> None:
    """Read input `index` through a tile of TILE tokens, copied by the intrinsic TILE channels at a time."""
    tokens, channels = sch.get_loops(block)[-2:]
    outer, _ = sch.split(tokens, [None, TILE])
    cache = sch.cache_read(block, index, "global")
    sch.compute_at(cache, outer)
    ndim = len(sch.get(cache).writes[0].source.shape)
    sch.transform_layout(cache, ("write", 0), tvm.tirx.IndexMap.from_func(
        lambda *i: [*i[:channel_dim], *i[channel_dim + 1:], i[channel_dim]], ndim=ndim))
    copy_channels = sch.get_loops(cache)[-2]
    if int(sch.get(copy_channels).extent) != TILE:
        _, copy_channels = sch.split(copy_channels, [None, TILE])
    sch.tensorize(copy_channels, INTRINSIC)
    if vectorize:
        _, lanes = sch.split(channels, [None, TILE])
        sch.vectorize(lanes)


def _evicting(stride: int, channels: int) -> bool:
    """Do a token's channels, `stride` bytes apart, lie in more lines of one L1 set than the set holds?"""
    return stride > 0 and stride % L1_WAY_BYTES == 0 and channels > L1_WAYS


def _planes_read(sch: Schedule, block, tokens, channels) -> tuple[int, int, bool] | None:
    """(read index, channel dimension, vectorizable) of the block's one int8 input whose flat offset steps by
    1 along loop `tokens` and along `channels` by a stride that makes a token's channels evict each other
    (the dimension: the one the channel loop indexes); not vectorizable if some read is at an index that is
    not linear in the loops (a lookup table). None unless exactly one such input."""
    realize = innermost_realize(sch, block)
    loop_vars = [sch.get(lp).loop_var for lp in (tokens, channels)]
    steps = read_steps(realize, loop_vars)
    if steps is None:
        return None
    c_var = block_var(realize, loop_vars[1])
    found = []
    for k, (region, step) in enumerate(zip(realize.block.reads, steps)):
        if step is None or str(region.source.dtype) != "int8" or step[0] != 1:
            continue
        if _evicting(step[1], int(sch.get(channels).extent)):
            dims = [d for d, r in enumerate(region.region)
                    if any(v.same_as(c_var) for v in tvm.tirx.analysis.undefined_vars(r.min))]
            if len(dims) == 1:
                found.append((k, dims[0]))
    return (*found[0], None not in steps) if len(found) == 1 else None
