"""The stem's GroupNorm statistics without its conv: from the sums and the Gram matrix of the input's patches.

For a 3x3 conv with padding 1 and output channel o, y_o(p) = W_o . P(p) + b_o, where P(p) is the 27-value input
patch at pixel p. So

    sum_p y_o = W_o . S + N b_o,    sum_p y_o^2 = W_o^T G W_o + 2 b_o W_o . S + N b_o^2,

with S = sum_p P(p) and G = sum_p P(p) P(p)^T, both of the input alone. G's entry for taps (c, i, j) and
(c', i', j') is a correlation of channels c and c' at offset (i' - i, j' - j) over the image, less the one
image row and column that tap (i, j) never reaches at the image's edge. The kernel multiplies each channel
row with each channel row 0-2 rows below at horizontal offsets -2..2, in float32 vectors over a band of
`rows_per_sum` rows (with uint8 pixels these partial sums stay below 2^24, so they are exact), adds the bands
up in int64, and takes the edge rows and columns apart; everything after is int64 and exact, so the statistics
equal the conv's, bit for bit.

Per pixel this is C x C x 3 x 5 = 135 products for the UCM-Net stem (3 -> 8 channels) against the conv's
27 x 8 = 216 multiply-adds, with no weight broadcasts: x86-64 AVX2 on an AMD EPYC, 256x256, alternating A/B
against the float32 conv kernel (`compile.kernels.stem`): 0.55 -> 0.26 ms (min), 0.72 -> 0.34 ms (median).
"""

from __future__ import annotations

import tvm
from tvm import te
from tvm.s_tir import Schedule

from compile.kernels.attrs import mark_scheduled
from compile.kernels.padding import FLOAT_LANES, copy_padding_in_vectors, loops_below
from compile.passes.depthwise_float import EXACT_FLOAT32, largest_magnitude

KERNEL, PADDING = 3, 1  # the conv this computes the statistics of: 3x3, padding 1, stride 1
ROWS, SHIFTS = KERNEL, 2 * KERNEL - 1  # row offsets 0..2 below, column offsets -2..2
# image rows per band, their products added up in float32 before int64 (x86-64 AVX2, 256x256: 8 rows timed
# within noise of 4, and its 10-row padded band made the bundle's largest workspace 4.5 KB larger)
BAND_ROWS = 4


def rows_per_sum(x_dtype: str, x_shape) -> int:
    """How many image rows' products each float32 lane adds up, exact (below 2^24): the largest such divisor of
    the height up to BAND_ROWS; 0 where not even one row's may."""
    row = int(x_shape[3]) // FLOAT_LANES * largest_magnitude(x_dtype) ** 2
    h = int(x_shape[2])
    return max((r for r in range(1, min(h, BAND_ROWS) + 1) if h % r == 0 and r * row < EXACT_FLOAT32), default=0)


def gram_exact(x_dtype: str, x_shape, w_shape, padding: int) -> bool:
    """Does this kernel apply: a 3x3 stride-1 conv with padding 1, rows of whole float vectors (two or more),
    one row's sums of products exact in float32 and the image's sum within int32?"""
    h, width = int(x_shape[2]), int(x_shape[3])
    return (tuple(int(d) for d in w_shape[2:]) == (KERNEL, KERNEL) and padding == PADDING and h > 1
            and width % FLOAT_LANES == 0 and width > FLOAT_LANES and rows_per_sum(x_dtype, x_shape) > 0
            and h * width * largest_magnitude(x_dtype) < 2**31)  # the image's sum in int32


def gram_stats_kernel(x_shape, x_dtype: str, w_shape) -> tvm.tirx.PrimFunc:
    """[2, O] int64: per output channel, the sum and the sum of squares of conv(x, w) + bias, as
    `compile.kernels.stem.stats_kernel` returns them; w: [O, C, 3, 3] float32 holding int8 values."""
    _, c_in, h, wd = (int(d) for d in x_shape)
    c_out = int(w_shape[0])
    x = te.placeholder(x_shape, x_dtype, name="x")
    w = te.placeholder(w_shape, "float32", name="w")
    b = te.placeholder((c_out,), "int32", name="bias")
    lanes, blocks = FLOAT_LANES, wd // FLOAT_LANES
    i64 = lambda e: tvm.tirx.const(e, "int64") if isinstance(e, int) else e.astype("int64")  # noqa: E731
    pixel = lambda c, r, s: i64(x[0, c, r, s])  # noqa: E731

    # the padded rows as float: row a holds image row a - 1, column u image column u - 2 (zero elsewhere)
    xp = te.compute((c_in, h + ROWS, wd + 2 * (SHIFTS // 2)), lambda c, a, u: tvm.tirx.if_then_else(
        tvm.tirx.all(a >= 1, a <= h, u >= 2, u < wd + 2), x[0, c, a - 1, u - 2].astype("float32"), 0.0), name="pad_temp")
    rows = rows_per_sum(x_dtype, x_shape)  # added up in float32 before int64
    ri, k = te.reduce_axis((0, rows), "ri"), te.reduce_axis((0, blocks), "k")
    products = te.compute((h // rows, c_in, c_in, ROWS, SHIFTS, lanes), lambda r, c, c2, di, dj, l: te.sum(
        xp[c, r * rows + ri + 1, 2 + k * lanes + l] * xp[c2, r * rows + ri + 1 + di, k * lanes + l + dj],
        axis=[ri, k]), name="products")
    ra, rl = te.reduce_axis((0, h // rows), "ra"), te.reduce_axis((0, lanes), "rl")
    corr = te.compute((c_in, c_in, ROWS, SHIFTS), lambda c, c2, di, dj: te.sum(
        i64(products[ra, c, c2, di, dj, rl].astype("int32")), axis=[ra, rl]), name="correlation")

    # image row 0 and row h - 1 with themselves at offsets -2..2: the rows a tap at the edge never reaches
    rs = te.reduce_axis((0, wd), "rs")
    shifted = lambda c, r, s: tvm.tirx.if_then_else(tvm.tirx.all(s >= 0, s < wd), pixel(c, r, s), i64(0))  # noqa: E731
    edge_rows = te.compute((2, c_in, c_in, SHIFTS), lambda e, c, c2, dj: te.sum(
        pixel(c, e * (h - 1), rs) * shifted(c2, e * (h - 1), rs + dj - 2), axis=rs), name="edge_rows")
    rr = te.reduce_axis((0, h), "rr")
    below = lambda c, r, s: tvm.tirx.if_then_else(r < h, pixel(c, r, s), i64(0))  # noqa: E731
    edge_cols = te.compute((2, c_in, c_in, ROWS), lambda e, c, c2, di: te.sum(
        pixel(c, rr, e * (wd - 1)) * below(c2, rr + di, e * (wd - 1)), axis=rr), name="edge_cols")
    rt, rt2, rl2 = te.reduce_axis((0, h), "rt"), te.reduce_axis((0, blocks), "rt2"), te.reduce_axis((0, lanes), "rl2")
    total_lanes = te.compute((c_in, lanes), lambda c, l: te.sum(
        x[0, c, rt, rt2 * lanes + l].astype("int32"), axis=[rt, rt2]), name="total_lanes")  # below 2^31: h w 255
    total = te.compute((c_in,), lambda c: te.sum(i64(total_lanes[c, rl2]), axis=rl2), name="total")
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
    wi = lambda o, c, i, j: i64(w[o, c, i, j])  # noqa: E731
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
    _schedule_correlation(sch)
    sch.compute_inline(sch.get_sblock("gram"))  # each entry once for all output channels: their loop innermost
    quadratic = sch.get_sblock("quadratic")
    o, *taps = sch.get_loops(quadratic)
    sch.reorder(*taps, o)
    gram_macs = h * wd * c_in * c_in * ROWS * SHIFTS
    return mark_scheduled(sch.mod["main"], macs=gram_macs, recomputed=gram_macs)


def _schedule_correlation(sch: Schedule) -> None:
    """Bands of `rows_per_sum` image rows outermost; per band the padded rows (copied in vectors), then for each
    second channel and column offset the 3 x 3 (first channel, row offset) products side by side in registers:
    each shifted row vector is loaded once for the three channels it multiplies (x86-64 AVX2: the alternative,
    15 accumulators of one channel pair with a load each, timed the same within noise). The image's sum in
    vectors."""
    block = sch.get_sblock("total_lanes")
    c, lane, row, col = sch.get_loops(block)
    sch.reorder(c, row, col, lane)
    sch.vectorize(lane)
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
