"""The stem's GroupNorm statistics without its conv: from the sums and the Gram matrix of the input's patches.

For a 3x3 conv with padding 1 and output channel o, y_o(p) = W_o . P(p) + b_o, where P(p) is the 27-value input
patch at pixel p. So

    sum_p y_o = W_o . S + N b_o,    sum_p y_o^2 = W_o^T G W_o + 2 b_o W_o . S + N b_o^2,

with S = sum_p P(p) and G = sum_p P(p) P(p)^T, both of the input alone. G's entry for taps (c, i, j) and
(c', i', j') is a correlation of channels c and c' at offset (i' - i, j' - j) over the image, less the one
image row and column that tap (i, j) never reaches at the image's edge. The kernel multiplies each channel
row with each channel row 0-2 rows below at horizontal offsets -2..2, adds the products up, and takes the edge
rows and columns apart; everything after is int64 and exact, so the statistics equal the conv's, bit for bit.
Per pixel this is C x C x 3 x 5 = 135 products for the UCM-Net stem (3 -> 8 channels) against the conv's
27 x 8 = 216 multiply-adds, with no weight broadcasts. The products are taken

- in float32 vectors over a band of `rows_per_sum` rows (with uint8 pixels these partial sums stay below 2^24,
  so they are exact), the bands added up in int64: x86-64 AVX2 on an AMD EPYC, 256x256, alternating A/B
  against the float32 conv kernel (`compile.kernels.stem`): 0.55 -> 0.26 ms (min), 0.72 -> 0.34 ms (median);
- or with an int8 dot-product instruction on two vectors (`DotProduct.pairs`, x86 VNNI `vpdpbusd`: 4 adjacent
  pixels of a row times 4 of the row below, 32 products an instruction against the conv's 8 x 4 over a kernel
  row padded from 3 taps to 4). It multiplies uint8 by int8, so the lower row is stored less 128, which takes
  128 x the upper row's sum off the products; it is added back (`pairs_exact`: each lane's int32 sum over the
  image exact). AMD EPYC with AVX-512 VNNI, 256x256, alternating A/B against the VNNI conv kernel: 0.212 ->
  0.079 ms.
"""

from __future__ import annotations

from collections.abc import Callable

import tvm
from tvm import te
from tvm.s_tir import Schedule

from compile.kernels.attrs import mark_scheduled
from compile.kernels.dot_product import ACTIVATION_OFFSET, padded_channels
from compile.kernels.padding import FLOAT_LANES, copy_padding_in_vectors, loops_below
from compile.passes.depthwise_float import EXACT_FLOAT32, largest_magnitude
from compile.toolchains import DotProduct

KERNEL, PADDING = 3, 1  # the conv this computes the statistics of: 3x3, padding 1, stride 1
ROWS, SHIFTS = KERNEL, 2 * KERNEL - 1  # row offsets 0..2 below, column offsets -2..2
# image rows per band, their products added up in float32 before int64 (x86-64 AVX2, 256x256: 8 rows timed
# within noise of 4, and its 10-row padded band made the bundle's largest workspace 4.5 KB larger); with
# `pairs`, the rows whose lower operands are padded at once (AVX-512 VNNI: 1 row 0.051 ms, 4 rows 0.046)
BAND_ROWS = 4


def _rows_per_band(h: int, allowed: Callable[[int], bool] = lambda rows: True) -> int:
    """The largest divisor of the height up to BAND_ROWS that `allowed` admits; 0 where none."""
    return max((r for r in range(1, min(h, BAND_ROWS) + 1) if h % r == 0 and allowed(r)), default=0)


def rows_per_sum(x_dtype: str, x_shape) -> int:
    """How many image rows' products each float32 lane adds up, exact (below 2^24): the largest such divisor of
    the height up to BAND_ROWS; 0 where not even one row's may."""
    row = int(x_shape[3]) // FLOAT_LANES * largest_magnitude(x_dtype) ** 2
    return _rows_per_band(int(x_shape[2]), lambda rows: rows * row < EXACT_FLOAT32)


def _gram_applies(x_dtype: str, x_shape, w_shape, padding: int) -> bool:
    """A 3x3 stride-1 conv with padding 1 over two or more rows, and the image's sum within int32."""
    h, width = int(x_shape[2]), int(x_shape[3])
    return (tuple(int(d) for d in w_shape[2:]) == (KERNEL, KERNEL) and padding == PADDING and h > 1
            and h * width * largest_magnitude(x_dtype) < 2**31)


def gram_exact(x_dtype: str, x_shape, w_shape, padding: int) -> bool:
    """Does the float32 kernel apply: `_gram_applies`, rows of whole float vectors (two or more), and one row's
    sums of products exact in float32?"""
    width = int(x_shape[3])
    return (_gram_applies(x_dtype, x_shape, w_shape, padding) and width % FLOAT_LANES == 0
            and width > FLOAT_LANES and rows_per_sum(x_dtype, x_shape) > 0)


def pairs_exact(x_dtype: str, x_shape, w_shape, padding: int, dot: DotProduct | None) -> bool:
    """Does the kernel with `dot.pairs` apply: `_gram_applies`, uint8 pixels (the instruction's unsigned
    operand), rows of whole instructions (two or more), and each lane's int32 sum over the image exact (each
    instruction adds at most depth x 255 x 128)?"""
    if dot is None or not dot.pairs or x_dtype != "uint8" or dot.activations != "uint8":
        return False
    h, width, block = int(x_shape[2]), int(x_shape[3]), dot.lanes * dot.depth
    per_instruction = dot.depth * largest_magnitude("uint8") * ACTIVATION_OFFSET
    return (_gram_applies(x_dtype, x_shape, w_shape, padding) and width % block == 0 and width > block
            and h * (width // block) * per_instruction < 2**31)


def gram_stats_kernel(x_shape, x_dtype: str, w_shape, pairs: DotProduct | None = None) -> tvm.tirx.PrimFunc:
    """[2, O] int64: per output channel, the sum and the sum of squares of conv(x, w) + bias, as
    `compile.kernels.stem.stats_kernel` returns them. The products in float32 (`gram_exact`), w: [O, C, 3, 3]
    float32 holding int8 values; or with `pairs.pairs` (`pairs_exact`), w: as `compile.kernels.stem.stem_weights`
    packs it for that instruction, [C, 3, O padded, depth] int8."""
    _, c_in, h, wd = (int(d) for d in x_shape)
    c_out = int(w_shape[0])
    x = te.placeholder(x_shape, x_dtype, name="x")
    if pairs is None:
        w = te.placeholder(w_shape, "float32", name="w")
        weight = lambda o, c, i, j: w[o, c, i, j]  # noqa: E731
    else:
        w = te.placeholder((c_in, KERNEL, padded_channels(c_out, pairs), pairs.depth), "int8", name="w")
        weight = lambda o, c, i, j: w[c, i, o, j]  # noqa: E731
    b = te.placeholder((c_out,), "int32", name="bias")
    lanes, blocks = FLOAT_LANES, wd // FLOAT_LANES
    i64 = lambda e: tvm.tirx.const(e, "int64") if isinstance(e, int) else e.astype("int64")  # noqa: E731
    pixel = lambda c, r, s: i64(x[0, c, r, s])  # noqa: E731

    rt, rt2, rl2 = te.reduce_axis((0, h), "rt"), te.reduce_axis((0, blocks), "rt2"), te.reduce_axis((0, lanes), "rl2")
    total_lanes = te.compute((c_in, lanes), lambda c, l: te.sum(
        x[0, c, rt, rt2 * lanes + l].astype("int32"), axis=[rt, rt2]), name="total_lanes")  # below 2^31: h w 255
    total = te.compute((c_in,), lambda c: te.sum(i64(total_lanes[c, rl2]), axis=rl2), name="total")
    corr = _float_correlation(x) if pairs is None else _pair_correlation(x, total, pairs)

    # image row 0 and row h - 1 with themselves at offsets -2..2: the rows a tap at the edge never reaches
    rs = te.reduce_axis((0, wd), "rs")
    shifted = lambda c, r, s: tvm.tirx.if_then_else(tvm.tirx.all(s >= 0, s < wd), pixel(c, r, s), i64(0))  # noqa: E731
    edge_rows = te.compute((2, c_in, c_in, SHIFTS), lambda e, c, c2, dj: te.sum(
        pixel(c, e * (h - 1), rs) * shifted(c2, e * (h - 1), rs + dj - 2), axis=rs), name="edge_rows")
    rr = te.reduce_axis((0, h), "rr")
    below = lambda c, r, s: tvm.tirx.if_then_else(r < h, pixel(c, r, s), i64(0))  # noqa: E731
    edge_cols = te.compute((2, c_in, c_in, ROWS), lambda e, c, c2, di: te.sum(
        pixel(c, rr, e * (wd - 1)) * below(c2, rr + di, e * (wd - 1)), axis=rr), name="edge_cols")
    rs2, rr2 = te.reduce_axis((0, wd), "rs2"), te.reduce_axis((0, h), "rr2")
    row_total = te.compute((2, c_in), lambda e, c: te.sum(pixel(c, e * (h - 1), rs2), axis=rs2), name="row_total")
    col_total = te.compute((2, c_in), lambda e, c: te.sum(pixel(c, rr2, e * (wd - 1)), axis=rr2), name="col_total")

    # tap (i, j) misses image row h - 1 (i = 0) or 0 (i = 2), column wd - 1 (j = 0) or 0 (j = 2)
    missed = lambda t: tvm.tirx.if_then_else(t == 0, 1, 0)  # noqa: E731  edge index: 1 = last, 0 = first
    corner = lambda c, i, j: pixel(c, missed(i) * (h - 1), missed(j) * (wd - 1))  # noqa: E731

    def patch_sum(c, i, j):
        s = total[c] - tvm.tirx.if_then_else(i != 1, row_total[missed(i), c], i64(0))
        s = s - tvm.tirx.if_then_else(j != 1, col_total[missed(j), c], i64(0))
        return s + tvm.tirx.if_then_else(tvm.tirx.all(i != 1, j != 1), corner(c, i, j), i64(0))

    def gram(c, i, j, c2, i2, j2):
        di, dj = i2 - i, j2 - j
        g = tvm.tirx.if_then_else(di >= 0, corr[c, c2, di, dj + 2], corr[c2, c, -di, 2 - dj])
        g = g - tvm.tirx.if_then_else(tvm.tirx.all(i != 1, di == 0), edge_rows[missed(i), c, c2, dj + 2], i64(0))
        col = tvm.tirx.if_then_else(di >= 0, edge_cols[missed(j), c, c2, di], edge_cols[missed(j), c2, c, -di])
        g = g - tvm.tirx.if_then_else(tvm.tirx.all(j != 1, dj == 0), col, i64(0))
        both = tvm.tirx.all(i != 1, j != 1, di == 0, dj == 0)
        return g + tvm.tirx.if_then_else(both, corner(c, i, j) * corner(c2, i, j), i64(0))

    s = te.compute((c_in, KERNEL, KERNEL), patch_sum, name="patch_sums")
    g = te.compute((c_in, KERNEL, KERNEL, c_in, KERNEL, KERNEL), gram, name="gram")
    wi = lambda o, c, i, j: i64(weight(o, c, i, j))  # noqa: E731
    t = [te.reduce_axis((0, n), f"t{n}_{q}") for q, n in enumerate((c_in, KERNEL, KERNEL))]
    ws = te.compute((c_out,), lambda o: te.sum(wi(o, *t) * s[t[0], t[1], t[2]], axis=t), name="weighted_sums")
    u = [te.reduce_axis((0, n), f"u{n}_{q}") for q, n in enumerate((c_in, KERNEL, KERNEL) * 2)]
    wgw = te.compute((c_out,), lambda o: te.sum(wi(o, *u[:3]) * wi(o, *u[3:]) * g[tuple(u)], axis=u), name="quadratic")
    n = h * wd

    def stack(q, o):
        bias = i64(b[o])
        return tvm.tirx.Select(q == 0, ws[o] + n * bias, wgw[o] + 2 * bias * ws[o] + n * bias * bias)

    out = te.compute((2, c_out), stack, name="stack")
    sch = Schedule(te.create_prim_func([x, w, b, out]))
    block = sch.get_sblock("total_lanes")  # the image's sum in vectors
    c, lane, row, col = sch.get_loops(block)
    sch.reorder(c, row, col, lane)
    sch.vectorize(lane)
    if pairs is None:
        _schedule_float_products(sch)
    else:
        _schedule_pair_products(sch, pairs, h)
    sch.compute_inline(sch.get_sblock("gram"))  # each entry once for all output channels: their loop innermost
    quadratic = sch.get_sblock("quadratic")
    o, *taps = sch.get_loops(quadratic)
    sch.reorder(*taps, o)
    gram_macs = h * wd * c_in * c_in * ROWS * SHIFTS
    return mark_scheduled(sch.mod["main"], macs=gram_macs, recomputed=gram_macs)


def _float_correlation(x: te.Tensor) -> te.Tensor:
    """[C, C, ROWS, SHIFTS] int64: each channel row times each channel row 0-2 below at column offsets -2..2,
    summed over the image, in float32 vectors per band of `rows_per_sum` rows."""
    _, c_in, h, wd = (int(d) for d in x.shape)
    lanes = FLOAT_LANES
    # the padded rows as float: row a holds image row a - 1, column u image column u - 2 (zero elsewhere)
    xp = te.compute((c_in, h + ROWS, wd + 2 * (SHIFTS // 2)), lambda c, a, u: tvm.tirx.if_then_else(
        tvm.tirx.all(a >= 1, a <= h, u >= 2, u < wd + 2), x[0, c, a - 1, u - 2].astype("float32"), 0.0),
        name="pad_temp")
    rows = rows_per_sum(str(x.dtype), x.shape)  # added up in float32 before int64
    ri, k = te.reduce_axis((0, rows), "ri"), te.reduce_axis((0, wd // lanes), "k")
    products = te.compute((h // rows, c_in, c_in, ROWS, SHIFTS, lanes), lambda r, c, c2, di, dj, l: te.sum(
        xp[c, r * rows + ri + 1, 2 + k * lanes + l] * xp[c2, r * rows + ri + 1 + di, k * lanes + l + dj],
        axis=[ri, k]), name="products")
    ra, rl = te.reduce_axis((0, h // rows), "ra"), te.reduce_axis((0, lanes), "rl")
    return te.compute((c_in, c_in, ROWS, SHIFTS), lambda c, c2, di, dj: te.sum(
        products[ra, c, c2, di, dj, rl].astype("int32").astype("int64"), axis=[ra, rl]), name="correlation")


def _schedule_float_products(sch: Schedule) -> None:
    """Bands of `rows_per_sum` image rows outermost; per band the padded rows (copied in vectors), then for each
    second channel and column offset the 3 x 3 (first channel, row offset) products side by side in registers:
    each shifted row vector is loaded once for the three channels it multiplies (x86-64 AVX2: the alternative,
    15 accumulators of one channel pair with a load each, timed the same within noise)."""
    block = sch.get_sblock("correlation")
    c, c2, di, dj, row, lane = sch.get_loops(block)
    sch.reorder(row, c, c2, di, dj, lane)
    sch.decompose_reduction(block, row)
    products, pad = sch.get_sblock("products"), sch.get_sblock("pad_temp")
    sch.compute_at(products, row)
    sch.compute_at(pad, row)
    copy_padding_in_vectors(sch, pad, row)
    c, c2, di, dj, lane, *band = loops_below(sch, products, row)  # band: [row in band,] block
    sch.reorder(c2, dj, *band, c, di, lane)
    sch.vectorize(lane)
    sch.unroll(di)
    sch.unroll(c)
    sch.decompose_reduction(products, band[0])


def _pair_correlation(x: te.Tensor, total: te.Tensor, dot: DotProduct) -> te.Tensor:
    """`_float_correlation`'s sums by `dot.pairs`: each lane's `depth` adjacent pixels of a row (uint8) times
    those of a row 0-2 below at offset -2..2, stored less 128 (int8; the padding -128), summed over the image
    in int32 lanes (`pairs_exact`); then + 128 x the upper channel's image sum, which the offset took away."""
    _, c_in, h, wd = (int(d) for d in x.shape)
    block, depth = dot.lanes * dot.depth, dot.depth
    # the lower rows: row a holds image row a (rows h, h + 1 are padding), column u image column u - 2
    less = lambda c, a, u: (x[0, c, a, u].astype("int32") - ACTIVATION_OFFSET).astype("int8")  # noqa: E731
    low = te.compute((c_in, h + ROWS - 1, wd + SHIFTS - 1), lambda c, a, u: tvm.tirx.if_then_else(
        tvm.tirx.all(a < h, u >= 2, u < wd + 2), less(c, a, u - 2), tvm.tirx.const(-ACTIVATION_OFFSET, "int8")),
        name="pad_temp")
    r, k, t = te.reduce_axis((0, h), "r"), te.reduce_axis((0, wd // block), "k"), te.reduce_axis((0, depth), "t")
    products = te.compute((c_in, c_in, ROWS, SHIFTS, dot.lanes), lambda c, c2, di, dj, l: te.sum(
        x[0, c, r, k * block + l * depth + t].astype("int32")
        * low[c2, r + di, k * block + l * depth + t + dj].astype("int32"), axis=[r, k, t]), name="products")
    rl = te.reduce_axis((0, dot.lanes), "rl")
    offset_sums = te.compute((c_in, c_in, ROWS, SHIFTS), lambda c, c2, di, dj: te.sum(
        products[c, c2, di, dj, rl].astype("int64"), axis=rl), name="offset_sums")
    return te.compute((c_in, c_in, ROWS, SHIFTS), lambda c, c2, di, dj: offset_sums[c, c2, di, dj]
                      + ACTIVATION_OFFSET * total[c], name="correlation")


def _schedule_pair_products(sch: Schedule, dot: DotProduct, h: int) -> None:
    """Bands of up to BAND_ROWS rows outermost; per band its lower rows padded (copied in vectors); then for
    each lower channel and column offset, along the row's instruction blocks, the 3 x 3 (upper channel, row
    offset) sums, one instruction each (AVX-512 VNNI, 256x256: 0.050 ms, against 0.071-0.121 ms in the three
    other orders timed)."""
    block = sch.get_sblock("products")
    c, c2, di, dj, lane, row, k, _ = sch.get_loops(block)
    band, row = sch.split(row, [None, _rows_per_band(h)])
    sch.reorder(band, row, c2, dj, k, c, di, lane)
    sch.decompose_reduction(block, band)
    pad = sch.get_sblock("pad_temp")
    sch.compute_at(pad, band)
    copy_padding_in_vectors(sch, pad, band, dot.lanes * dot.depth)
    sch.tensorize(lane, dot.pairs)
