"""The stem's two kernels (`compile.passes.recompute_groupnorm`), each recomputing its 3x3 conv row by row.

1. `stats_kernel`: per output channel, the sum and the sum of squares of conv(x, w) + bias, exact in int64;
2. `pool_kernel`: a_c * (conv(x, w) + bias) + k_c, max-pool 2x2, ReLU, at quarter size (float32, or quantized).

How the conv is computed (`StemConv`):
- with a dot-product instruction that multiplies the input's type (x86 VNNI: the uint8 pixels): each
  instruction takes 4 horizontally adjacent pixels of a channel and kernel row for `dot.lanes` output channels;
  where the instruction has a `pairs` form and `pairs_exact` holds, the statistics come from the input's Gram
  matrix instead, its products taken by that form (`compile.kernels.stem_gram`; AVX-512 VNNI on an AMD EPYC,
  256x256, alternating A/B: 0.212 -> 0.079 ms);
- in float32 (`float_sums`): every product and partial sum is an integer below 2^24 (the pass checks), so the
  sums are exact; one float multiply-add per tap and 8 pixels, the padded input rows converted to float once
  per output row and copied in vectors (`decompose_padding`: zeros first, then the image rows), and the
  statistics kept in int64 vectors of LANES pixels (x86-64 AVX2 on an AMD EPYC, single-kernel A/B against
  the int32 kernels, 256x256, 3 -> 8 channels: stats 2.01 -> 0.74 ms, pool 1.34 -> 0.65 ms). Where its
  preconditions hold (`gram_exact`: a 3x3 conv, padding 1), the statistics skip the conv altogether and come
  from the input's patch sums and Gram matrix (`compile.kernels.stem_gram`; same AMD EPYC, alternating A/B:
  0.55 -> 0.26 ms min, 0.72 -> 0.34 ms median); the pool kernel's conv is then the only one;
- else in int32 along a vectorized row (`_conv_rows`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import te, topi
from tvm.s_tir import Schedule

from compile.kernels.attrs import LANES, mark_scheduled
from compile.kernels.dot_product import padded_channels
from compile.kernels.padding import FLOAT_LANES, copy_padding_in_vectors, loops_below
from compile.kernels.stem_gram import gram_exact, gram_stats_kernel, pairs_exact
from compile.passes.common import Quantizer
from compile.toolchains import DotProduct


# pixels whose dot-product chains (9 instructions each for a 3x3 conv of 3 channels) are interleaved: enough
# independent instructions to cover one's latency at the rate they issue (vpdpbusd: 4-5 cycles, 2 a cycle on
# Zen 4 and recent Intel cores). AVX-512 VNNI on an AMD EPYC, the pool kernel alone: 1, 2, 4, 8, 16 pixels
# 0.202, 0.190, 0.176, 0.162, 0.179 ms
DOT_CHAINS = 8


@dataclass(frozen=True)
class StemConv:
    """How the stem kernels compute the conv: `channels_inside`, all output channels' accumulators in registers
    at once (else one channel at a time); `dot`, tensorized with this instruction, `chains` pixels interleaved
    (`dot_chains`); `float_sums`, in float32."""

    channels_inside: bool = True
    dot: DotProduct | None = None
    float_sums: bool = False
    chains: int = 1


def dot_chains(dot: DotProduct, x_shape, w_shape, vector_register_bytes: int) -> int:
    """DOT_CHAINS pixels' instruction chains interleaved where their accumulators and the kernel's weight rows
    (a vector each) fit the register file and divide the row; else 1."""
    c_in, kh, width = int(w_shape[1]), int(w_shape[2]), int(x_shape[3])
    fits = (DOT_CHAINS + c_in * kh) * dot.lanes * 4 <= vector_register_bytes
    return DOT_CHAINS if fits and width % DOT_CHAINS == 0 else 1


# (output channel, row, column, dtype) -> conv(x, w) + bias there, in dtype
Biased = Callable[["tvm.tirx.PrimExpr", "tvm.tirx.PrimExpr", "tvm.tirx.PrimExpr", str], "tvm.tirx.PrimExpr"]


def _dot_conv(x: te.Tensor, w_shape, padding: int, dot: DotProduct) -> tuple[te.Tensor, te.Tensor]:
    """The conv as dot-product instructions: each takes `dot.depth` horizontally adjacent input pixels of one
    channel and kernel row (the kernel's row zero-padded to that width) for `dot.lanes` output channels.
    Returns the packed weights' placeholder (`stem_weights`) and the int32 sums [1, H, W, C padded]."""
    c_out, c_in, kh, kw = (int(d) for d in w_shape)
    _, _, h, wd = (int(d) for d in x.shape)
    w = te.placeholder((c_in, kh, padded_channels(c_out, dot), dot.depth), "int8", name="w")
    inside = lambda y, xx: tvm.tirx.all(y >= padding, y < h + padding, xx >= padding, xx < wd + padding)  # noqa: E731
    xp = te.compute((1, c_in, h + 2 * padding, wd + 2 * padding + dot.depth - kw), lambda n, c, y, xx:
                    tvm.tirx.if_then_else(inside(y, xx), x[n, c, y - padding, xx - padding], tvm.tirx.const(0, x.dtype)),
                    name="pad_temp")
    rc, ry, rt = te.reduce_axis((0, c_in), "rc"), te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, dot.depth), "rt")
    acc = te.compute((1, h + 2 * padding - kh + 1, wd + 2 * padding - kw + 1, w.shape[2]), lambda n, y, xx, o: te.sum(
        xp[n, rc, y + ry, xx + rt].astype("int32") * w[rc, ry, o, rt].astype("int32"), axis=[rc, ry, rt]),
        name="conv2d_nchw")
    return w, acc


def stem_weights(w: np.ndarray, conv: StemConv) -> np.ndarray:
    """[O, C, KH, KW] int8 weights as the kernels read them: with `conv.dot`, as `_dot_conv` does, [C, KH, O
    padded, depth], zero beyond KW and O; float32 with `conv.float_sums`; else as they are."""
    if conv.dot is None:
        return w.astype(np.float32) if conv.float_sums else w
    c_out, c_in, kh, kw = w.shape
    packed = np.zeros((c_in, kh, padded_channels(c_out, conv.dot), conv.dot.depth), np.int8)
    packed[:, :, :c_out, :kw] = w.transpose(1, 2, 0, 3)
    return packed


def _conv_out(x_shape, w_shape, padding: int) -> tuple[int, int, int]:
    """Output channels, height and width of the stride-1 conv."""
    return (int(w_shape[0]), int(x_shape[2]) + 2 * padding - int(w_shape[2]) + 1,
            int(x_shape[3]) + 2 * padding - int(w_shape[3]) + 1)


def _stem_conv(x: te.Tensor, b: te.Tensor, w_shape, padding: int, conv: StemConv) -> tuple[te.Tensor, Biased]:
    """(weights placeholder, conv(x, w) + bias as a function of output channel, pixel and dtype). The float
    conv takes float32 weights, its int values go through int32 (an int64 square of a widened int32 is one
    instruction, vpmuldq, where a general int64 product is several)."""
    if conv.dot is not None:
        w, acc = _dot_conv(x, w_shape, padding, conv.dot)
        return w, lambda c, y, xx, dtype: (acc[0, y, xx, c] + b[c]).astype(dtype)
    if not conv.float_sums:
        w = te.placeholder(w_shape, "int8", name="w")
        acc = topi.nn.conv2d_nchw(x, w, 1, padding, 1, out_dtype="int32")
        return w, lambda c, y, xx, dtype: (acc[0, c, y, xx] + b[c]).astype(dtype)
    w = te.placeholder(w_shape, "float32", name="w")
    acc = topi.nn.conv2d_nchw(topi.cast(x, "float32"), w, 1, padding, 1, out_dtype="float32")

    def biased(c, y, xx, dtype: str):
        value = acc[0, c, y, xx] + b[c].astype("float32")
        return value if dtype == "float32" else value.astype("int32").astype(dtype)

    return w, biased


def _gram_stats(conv: StemConv, x_shape, x_dtype: str, w_shape, padding: int) -> bool:
    """Do the statistics come from the input's Gram matrix (`compile.kernels.stem_gram`), without the conv: its
    products in float32 with `conv.float_sums`, or by the dot-product instruction's `pairs` form?"""
    return ((conv.float_sums and gram_exact(x_dtype, x_shape, w_shape, padding))
            or pairs_exact(x_dtype, x_shape, w_shape, padding, conv.dot))


def stats_kernel(x_shape, x_dtype: str, w_shape, padding: int, conv: StemConv = StemConv()) -> tvm.tirx.PrimFunc:
    """[2, C] int64: per channel, sum and sum of squares of conv(x, w) + bias over the image. The weights come
    as `stem_weights` lays them out."""
    if _gram_stats(conv, x_shape, x_dtype, w_shape, padding):
        return gram_stats_kernel(x_shape, x_dtype, w_shape, None if conv.float_sums else conv.dot)
    x = te.placeholder(x_shape, x_dtype, name="x")
    b = te.placeholder((w_shape[0],), "int32", name="bias")
    w, biased = _stem_conv(x, b, w_shape, padding, conv)
    c_out, h, wd = _conv_out(x_shape, w_shape, padding)
    sum2 = te.comm_reducer(lambda a, b_: (a[0] + b_[0], a[1] + b_[1]),
                           lambda t0, t1: (tvm.tirx.const(0, t0), tvm.tirx.const(0, t1)), name="sum2")
    lanes = LANES if conv.float_sums and wd % LANES == 0 else 1  # per-lane sums first, added up at the end
    ry, rx = te.reduce_axis((0, h), "ry"), te.reduce_axis((0, wd // lanes), "rx")

    def v(c, y, xx):
        return biased(c, y, xx, "int64")

    if lanes == 1:
        s1, s2 = te.compute((c_out,), lambda c: sum2((v(c, ry, rx), v(c, ry, rx) * v(c, ry, rx)), axis=[ry, rx]),
                            name="stats")
    else:
        p1, p2 = te.compute((c_out, lanes), lambda c, i: sum2(
            (v(c, ry, rx * lanes + i), v(c, ry, rx * lanes + i) * v(c, ry, rx * lanes + i)), axis=[ry, rx]),
            name="stats")
        ri = te.reduce_axis((0, lanes), "ri")
        s1, s2 = te.compute((c_out,), lambda c: sum2((p1[c, ri], p2[c, ri]), axis=[ri]), name="lanes")
    out = te.compute((2, c_out), lambda i, c: tvm.tirx.Select(i == 0, s1[c], s2[c]), name="stack")
    sch = Schedule(te.create_prim_func([x, w, b, out]))
    red = sch.get_sblock("stats")
    c, *lane, row, col = sch.get_loops(red)
    sch.reorder(row, c, col, *lane)  # image rows outside channels: each padded input row band is built once
    if lane:
        sch.vectorize(lane[0])
    _schedule_conv(sch, row, c, conv)
    if conv.dot is not None:  # the sums [pixel, channel]: the channels' sums side by side, in one vector
        sch.reorder(col, c)
    if lane:
        sch.decompose_reduction(red, row)
    return mark_scheduled(sch.mod["main"], macs=_conv_macs(h, wd, w_shape), recomputed=0)


def pool_kernel(x_shape, x_dtype: str, w_shape, padding: int, quant: Quantizer | None = None,
                conv: StemConv = StemConv()) -> tvm.tirx.PrimFunc:
    """relu(max_pool_2x2(a_c * (conv(x, w) + bias) + k_c)) [1, C, H/2, W/2]: float32, or quantized by `quant`.
    Weights as for `stats_kernel`."""
    x = te.placeholder(x_shape, x_dtype, name="x")
    b = te.placeholder((w_shape[0],), "int32", name="bias")
    a = te.placeholder((w_shape[0],), "float32", name="scale")
    k = te.placeholder((w_shape[0],), "float32", name="shift")
    w, biased = _stem_conv(x, b, w_shape, padding, conv)
    c_out, h, wd = _conv_out(x_shape, w_shape, padding)
    z = te.compute((1, c_out, h, wd), lambda n, c, y, xx: biased(c, y, xx, "float32") * a[c] + k[c], name="z")
    di, dj = te.reduce_axis((0, 2), "di"), te.reduce_axis((0, 2), "dj")
    pooled = te.compute((1, c_out, h // 2, wd // 2),
                        lambda n, c, i, j: te.max(z[n, c, 2 * i + di, 2 * j + dj], axis=[di, dj]), name="pool")

    def relu(n, c, i, j):
        v = tvm.tirx.Max(pooled[n, c, i, j], tvm.tirx.const(0, "float32"))
        return v if quant is None else quant.apply(v)

    out = te.compute(pooled.shape, relu, name="relu")
    sch = Schedule(te.create_prim_func([x, w, b, a, k, out]))
    sch.compute_inline(sch.get_sblock("z"))
    pool = sch.get_sblock("pool")
    _, c, i, j, _, _ = sch.get_loops(pool)
    if conv.dot is None:
        sch.reorder(i, c)
        sch.reverse_compute_at(sch.get_sblock("relu"), j)
    else:  # the sums are [pixel, channel]: pool each pixel's channels side by side, written so too
        sch.reorder(i, j, c)
        relu = sch.get_sblock("relu")
        sch.reverse_compute_at(relu, c)
        _channels_last_row(sch, relu, i)
    _schedule_conv(sch, i, c, conv)
    macs = _conv_macs(h, wd, w_shape)
    recomputed = 0 if _gram_stats(conv, x_shape, x_dtype, w_shape, padding) else macs  # the conv's first time
    return mark_scheduled(sch.mod["main"], macs=macs, recomputed=recomputed)


def _channels_last_row(sch: Schedule, block, row) -> None:
    """`block` writes each output row's pixels channels-last into a row buffer, copied into the channel planes
    after the row (one store of a pixel's channels instead of a byte store per channel; AVX-512 VNNI on an AMD
    EPYC, the pool kernel alone: 0.246 -> 0.203 ms)."""
    sch.cache_write(block, 0, "global")
    sch.transform_layout(block, ("write", 0), lambda n, c, i, j: (n, i, j, c))
    sch.reverse_compute_at(sch.get_consumers(block)[0], row)


def _conv_macs(h: int, wd: int, w_shape) -> int:
    return h * wd * int(np.prod([int(d) for d in w_shape]))


def _schedule_conv(sch: Schedule, row, channel, conv: StemConv) -> None:
    """The conv computed for the rows one iteration of loop `row` needs: `_conv_rows`, or with `conv.dot` all
    output channels of each pixel, `dot.lanes` at a time, each tap row as one instruction, the instructions of
    `conv.chains` pixels interleaved."""
    block, pad = sch.get_sblock("conv2d_nchw"), sch.get_sblock("pad_temp")
    if conv.float_sums:
        sch.compute_inline(sch.get_sblock("compute"))  # the uint8 -> float32 cast (topi.cast), into the padding
    if conv.dot is None:
        _conv_rows(sch, block, pad, row, channel, conv)
        return
    dot = conv.dot
    sch.compute_at(block, row)  # the rows this iteration needs, all channels: [rows,] pixel, channel, taps
    sch.compute_at(pad, row)
    *_, pixel, out_channel, rc, ry, rt = sch.get_loops(block)
    channels, lanes = sch.split(out_channel, [None, dot.lanes])
    pixels, chain = sch.split(pixel, [None, conv.chains])
    sch.reorder(pixels, channels, rc, ry, chain, lanes, rt)
    sch.decompose_reduction(block, rc)
    sch.unroll(chain)
    sch.tensorize(lanes, dot.intrinsic)


def _conv_rows(sch: Schedule, block, pad, row, channel, conv: StemConv) -> None:
    """Compute the conv for the rows one iteration of loop `row` needs, accumulating along a vectorized row.
    `conv.channels_inside`: every output channel at once, the channel loop inside the kernel taps, so each input
    vector is loaded (and widened) once for all channels (their accumulators must fit the vector registers);
    else one channel at a time (under loop `channel`). With `conv.float_sums`, FLOAT_LANES pixels a vector (one
    AVX2 register per output channel; with 16 the accumulators spilled: stats 1.03 -> 1.17 ms) and the padded
    rows copied in vectors."""
    at = row if conv.channels_inside else channel
    sch.compute_at(block, at)
    sch.compute_at(pad, row)
    if conv.float_sums:
        copy_padding_in_vectors(sch, pad, row)
    inner = loops_below(sch, block, at)  # unit loops are gone after compute_at: [ff,] [yy,] xx, rc, ry, rx
    channels = [inner.pop(0)] if conv.channels_inside else []
    *rows, xx, rc, ry, rx = inner
    extent = int(sch.get(xx).extent)
    width = FLOAT_LANES if conv.float_sums else LANES
    if extent % width == 0:
        outer, lanes = sch.split(xx, [None, width])
        sch.reorder(*rows, outer, rc, ry, rx, *channels, lanes)
        sch.vectorize(lanes)
    else:
        sch.reorder(*rows, rc, ry, rx, *channels, xx)
    sch.decompose_reduction(block, rc)
