"""compile.kernels.stem with `float_sums`: the same statistics and pooled output as the int32 kernels, the
padded rows written as zeros then copied in vectors, the statistics in vectors of LANES pixels; and
`float_exact`, the bound that allows it. compile.kernels.stem_gram: the statistics from the input's Gram
matrix, bit-identical to the conv's, its products in float32 (`gram_exact`, where it applies) or by VNNI's
`vpdpbusd` on pairs of vectors (`pairs_exact`; the arithmetic on any CPU, the instruction where it runs)."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm.s_tir import Schedule

from compile.kernels.attrs import LANES, MACS_ATTR, RECOMPUTED_ATTR
from compile.kernels.stem import (
    DOT_CHAINS,
    FLOAT_LANES,
    StemConv,
    dot_chains,
    pool_kernel,
    stats_kernel,
    stem_weights,
)
from compile.kernels.stem_gram import (
    BAND_ROWS,
    _float_correlation,
    _pair_correlation,
    gram_exact,
    gram_stats_kernel,
    pairs_exact,
    rows_per_sum,
)
from compile.passes.depthwise_float import float_exact
from compile.toolchains import get_target
from targets.cpu import host_cpu, host_target

RNG = np.random.default_rng(5)
W_SHAPE = (4, 3, 3, 3)
FLOAT = StemConv(float_sums=True)
VNNI, VNNI_LLVM = get_target("x86_64-vnni").dot_product, get_target("x86_64-vnni").llvm


def _cases(shape: tuple[int, ...], w_shape: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Random values, and the extremes: every sum its largest."""
    c_out = w_shape[0]
    cases = [(RNG.integers(0, 256, shape), RNG.integers(-128, 128, w_shape), RNG.integers(-20000, 20000, c_out)),
             (np.full(shape, 255), np.full(w_shape, -128), np.full(c_out, 2**24 - 1)),
             (np.full(shape, 255), np.where(RNG.random(w_shape) < 0.5, -128, 127), np.zeros(c_out))]
    return [(x.astype(np.uint8), w.astype(np.int8), b.astype(np.int32)) for x, w, b in cases]


def _run(func: tvm.tirx.PrimFunc, out: np.ndarray, *args: np.ndarray, target: str | dict = "llvm") -> np.ndarray:
    lib = tvm.tirx.build(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)
    result = tvm.runtime.tensor(out)
    lib["main"](*(tvm.runtime.tensor(a) for a in args), result)
    return result.numpy()


@pytest.mark.parametrize("width", [LANES, FLOAT_LANES])
def test_float_stem_kernels_give_the_int32_values(width: int) -> None:
    shape = (1, 3, 4, width)
    x = RNG.integers(0, 256, shape).astype(np.uint8)
    x[0, :, 1, 2] = 255  # a pixel at the extreme
    w = RNG.integers(-128, 128, W_SHAPE).astype(np.int8)
    bias = RNG.integers(-20000, 20000, W_SHAPE[0]).astype(np.int32)
    scale, shift = (RNG.random(W_SHAPE[0]) * 1e-4).astype(np.float32), RNG.random(W_SHAPE[0]).astype(np.float32)
    stats = np.zeros((2, W_SHAPE[0]), np.int64)
    float_stats = stats_kernel(shape, "uint8", W_SHAPE, 1, FLOAT)
    np.testing.assert_array_equal(_run(float_stats, stats, x, w.astype(np.float32), bias),
                                  _run(stats_kernel(shape, "uint8", W_SHAPE, 1), stats, x, w, bias))
    pooled = np.zeros((1, W_SHAPE[0], 2, width // 2), np.float32)
    float_pool = pool_kernel(shape, "uint8", W_SHAPE, 1, conv=FLOAT)
    np.testing.assert_array_equal(_run(float_pool, pooled, x, w.astype(np.float32), bias, scale, shift),
                                  _run(pool_kernel(shape, "uint8", W_SHAPE, 1), pooled, x, w, bias, scale, shift))
    sch = Schedule(float_pool)
    assert sch.get_sblock("pad_temp_pad_const") is not None  # zeros first, then the image rows in vectors
    copy = sch.get_loops(sch.get_sblock("pad_temp"))[-1]
    assert sch.get(copy).kind == tvm.tirx.ForKind.VECTORIZED and int(sch.get(copy).extent) == FLOAT_LANES


def test_float_stem_statistics_are_vectors_of_pixels() -> None:
    sch = Schedule(stats_kernel((1, 3, 4, 2 * LANES), "uint8", (4, 3, 5, 5), 2, FLOAT))  # 5x5: not for the Gram
    lane = sch.get_loops(sch.get_sblock("stats_update"))[-1]
    assert sch.get(lane).kind == tvm.tirx.ForKind.VECTORIZED and int(sch.get(lane).extent) == LANES


def test_float_exact_bounds_each_channels_sums() -> None:
    w = np.full(W_SHAPE, 127, np.int8)
    assert float_exact("uint8", w)  # 27 x 255 x 127 = 874,395
    assert not float_exact("uint8", w, np.array([2**24 - 874_395, 0, 0, 0], np.int32))
    assert float_exact("uint8", w, np.array([2**24 - 874_396, 0, 0, 0], np.int32))
    assert float_exact("int8", np.full((8, 1, 3, 3), -128, np.int8))  # depthwise: 9 x 128 x 128


@pytest.mark.parametrize("shape", [(1, 3, 4, 16), (1, 3, 6, 24), (1, 2, 2, 16)])
def test_gram_statistics_equal_the_convs(shape: tuple[int, ...]) -> None:
    w_shape = (4, shape[1], 3, 3)
    stats = np.zeros((2, w_shape[0]), np.int64)
    for x, w, bias in _cases(shape, w_shape):
        gram = _run(gram_stats_kernel(shape, "uint8", w_shape), stats, x, w.astype(np.float32), bias)
        np.testing.assert_array_equal(gram, _run(stats_kernel(shape, "uint8", w_shape, 1), stats, x, w, bias))


def test_float_stem_takes_the_gram_statistics_and_counts_one_conv() -> None:
    shape = (1, 3, 4, 16)
    stats, pool = stats_kernel(shape, "uint8", W_SHAPE, 1, FLOAT), pool_kernel(shape, "uint8", W_SHAPE, 1, conv=FLOAT)
    sch = Schedule(stats)
    assert "conv2d_nchw" not in stats.script()  # no conv: products of the input's rows
    lane = sch.get_loops(sch.get_sblock("products_update"))[-1]
    assert sch.get(lane).kind == tvm.tirx.ForKind.VECTORIZED and int(sch.get(lane).extent) == FLOAT_LANES
    conv_macs = 4 * 16 * int(np.prod(W_SHAPE))
    assert int(pool.attrs[MACS_ATTR]) == conv_macs and int(pool.attrs[RECOMPUTED_ATTR]) == 0  # the model's conv
    assert int(stats.attrs[RECOMPUTED_ATTR]) == int(stats.attrs[MACS_ATTR]) == 4 * 16 * 3 * 3 * 3 * 5
    direct = pool_kernel(shape, "uint8", W_SHAPE, 1)  # the int32 kernels: the statistics' conv is the model's
    assert int(direct.attrs[RECOMPUTED_ATTR]) == conv_macs


def test_gram_exact_where_float_sums_stay_exact() -> None:
    assert rows_per_sum("uint8", (1, 3, 256, 256)) == BAND_ROWS  # 32 vectors x 255^2 = 2,080,800 a row
    assert rows_per_sum("uint8", (1, 3, 6, 256)) == 3  # a divisor of the height
    assert gram_exact("uint8", (1, 3, 256, 256), (8, 3, 3, 3), 1)
    assert gram_exact("uint8", (1, 3, 4, 2064), (8, 3, 3, 3), 1)  # 258 x 65,025 = 16,776,450 < 2^24
    assert not gram_exact("uint8", (1, 3, 4, 2072), (8, 3, 3, 3), 1)  # 259 x 65,025 = 16,841,475
    assert not gram_exact("uint8", (1, 3, 256, 256), (8, 3, 5, 5), 2)  # another kernel size
    assert not gram_exact("uint8", (1, 3, 256, 256), (8, 3, 3, 3), 0)  # another padding
    assert not gram_exact("uint8", (1, 3, 256, 12), (8, 3, 3, 3), 1)  # rows not whole vectors
    assert not gram_exact("uint8", (1, 3, 4096, 4096), (8, 3, 3, 3), 1)  # the image's sum beyond int32


def test_pair_correlation_equals_the_float_one() -> None:
    """The pairs' arithmetic on any CPU (untensorized): the lower rows less 128, padded with -128, and the
    upper rows' sums added back give the float32 products' correlation."""
    shape = (1, 3, 4, 64)
    x = tvm.te.placeholder(shape, "uint8", name="x")
    r, s = tvm.te.reduce_axis((0, 4), "r"), tvm.te.reduce_axis((0, 64), "s")
    total = tvm.te.compute((3,), lambda c: tvm.te.sum(x[0, c, r, s].astype("int64"), axis=[r, s]), name="total")
    pairs, floats = _pair_correlation(x, total, VNNI), _float_correlation(x)
    for image in (RNG.integers(0, 256, shape), np.full(shape, 255)):
        out = np.zeros((3, 3, 3, 5), np.int64)
        got = [_run(tvm.te.create_prim_func([x, c]), out, image.astype(np.uint8)) for c in (pairs, floats)]
        np.testing.assert_array_equal(*got)


@pytest.mark.skipif(host_target(host_cpu()) != "x86_64-vnni", reason="this CPU lacks AVX-512 VNNI")
@pytest.mark.parametrize("shape", [(1, 3, 4, 64), (1, 3, 6, 96), (1, 2, 2, 64)])
def test_pair_statistics_equal_the_convs(shape: tuple[int, ...]) -> None:
    w_shape = (8, shape[1], 3, 3)
    stats = np.zeros((2, w_shape[0]), np.int64)
    for x, w, bias in _cases(shape, w_shape):
        packed = stem_weights(w, StemConv(dot=VNNI))
        pairs = _run(gram_stats_kernel(shape, "uint8", w_shape, VNNI), stats, x, packed, bias,
                     target=VNNI_LLVM)
        np.testing.assert_array_equal(pairs, _run(stats_kernel(shape, "uint8", w_shape, 1), stats, x, w, bias))


def test_vnni_stem_takes_the_pair_statistics() -> None:
    shape, w_shape = (1, 3, 4, 64), (8, 3, 3, 3)
    stats = stats_kernel(shape, "uint8", w_shape, 1, StemConv(dot=VNNI))
    pool = pool_kernel(shape, "uint8", w_shape, 1, conv=StemConv(dot=VNNI, chains=DOT_CHAINS))
    script = stats.script()
    assert "conv2d_nchw" not in script and "llvm.x86.avx512.vpdpbusd.256" in script
    sch = Schedule(stats)
    copy = sch.get_loops(sch.get_sblock("pad_temp"))[-1]
    assert sch.get(copy).kind == tvm.tirx.ForKind.VECTORIZED  # the lower rows copied in vectors
    assert int(pool.attrs[RECOMPUTED_ATTR]) == 0  # the pool kernel's conv is the model's, computed once
    sch = Schedule(pool)  # the pixels' channels side by side into a row buffer, copied to the planes per row
    assert [sch.get(lp).loop_var.name for lp in sch.get_loops(sch.get_sblock("relu_global"))][:2] == ["n", "i"]
    chain = sch.get(sch.get_loops(sch.get_sblock("conv2d_nchw_update_o"))[-1])  # pixels' chains interleaved
    assert chain.kind == tvm.tirx.ForKind.UNROLLED and int(chain.extent) == DOT_CHAINS


def test_dot_chains_where_accumulators_and_weights_fit() -> None:
    assert dot_chains(VNNI, (1, 3, 256, 256), (8, 3, 3, 3), 32 * 32) == DOT_CHAINS  # (8 + 9) x 32 B: AVX-512
    assert dot_chains(VNNI, (1, 3, 256, 256), (8, 3, 3, 3), 16 * 32) == 1  # AVX2's 16 registers
    assert dot_chains(VNNI, (1, 3, 256, 252), (8, 3, 3, 3), 32 * 32) == 1  # not a whole number of chains a row


@pytest.mark.skipif(host_target(host_cpu()) != "x86_64-vnni", reason="this CPU lacks AVX-512 VNNI")
def test_vnni_conv_statistics_where_the_pairs_do_not_apply() -> None:
    shape, w_shape = (1, 3, 4, 40), (8, 3, 3, 3)  # rows of 40: not whole pairs instructions (32 pixels)
    conv = StemConv(dot=VNNI, chains=DOT_CHAINS)
    assert not pairs_exact("uint8", shape, w_shape, 1, VNNI) and "conv2d_nchw" in stats_kernel(
        shape, "uint8", w_shape, 1, conv).script()
    stats = np.zeros((2, 8), np.int64)
    for x, w, bias in _cases(shape, w_shape):
        vnni = _run(stats_kernel(shape, "uint8", w_shape, 1, conv), stats, x, stem_weights(w, conv), bias,
                    target=VNNI_LLVM)
        np.testing.assert_array_equal(vnni, _run(stats_kernel(shape, "uint8", w_shape, 1), stats, x, w, bias))


@pytest.mark.skipif(host_target(host_cpu()) != "x86_64-vnni", reason="this CPU lacks AVX-512 VNNI")
def test_vnni_pool_kernel_gives_the_int32_values() -> None:
    shape, w_shape = (1, 3, 4, 64), (8, 3, 3, 3)
    for x, w, bias in _cases(shape, w_shape):
        scale, shift = (RNG.random(8) * 1e-4).astype(np.float32), RNG.random(8).astype(np.float32)
        pooled = np.zeros((1, 8, 2, 32), np.float32)
        # both with its FMA, which rounds (acc + b) * a + k once
        vnni = _run(pool_kernel(shape, "uint8", w_shape, 1, conv=StemConv(dot=VNNI, chains=DOT_CHAINS)), pooled, x,
                    stem_weights(w, StemConv(dot=VNNI)), bias, scale, shift, target=VNNI_LLVM)
        plain = _run(pool_kernel(shape, "uint8", w_shape, 1), pooled, x, w, bias, scale, shift, target=VNNI_LLVM)
        np.testing.assert_array_equal(vnni, plain)


def test_pairs_exact_where_each_lanes_sum_stays_in_int32() -> None:
    assert pairs_exact("uint8", (1, 3, 256, 256), (8, 3, 3, 3), 1, VNNI)  # 256 x 8 x 4 x 255 x 128: 267,386,880
    assert pairs_exact("uint8", (1, 3, 2056, 256), (8, 3, 3, 3), 1, VNNI)  # 2,147,450,880 < 2^31
    assert not pairs_exact("uint8", (1, 3, 2057, 256), (8, 3, 3, 3), 1, VNNI)  # 2,148,495,360
    assert not pairs_exact("uint8", (1, 3, 256, 48), (8, 3, 3, 3), 1, VNNI)  # rows not whole instructions
    assert not pairs_exact("int8", (1, 3, 256, 256), (8, 3, 3, 3), 1, VNNI)  # the instruction's unsigned operand
    assert not pairs_exact("uint8", (1, 3, 256, 256), (8, 3, 5, 5), 2, VNNI)  # another kernel size
    assert not pairs_exact("uint8", (1, 3, 256, 256), (8, 3, 3, 3), 1, get_target("x86_64").dot_product)  # no pairs
    assert not pairs_exact("uint8", (1, 3, 256, 256), (8, 3, 3, 3), 1, None)
