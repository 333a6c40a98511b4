"""compile.kernels.stem with `float_sums`: the same statistics and pooled output as the int32 kernels, the
padded rows written as zeros then copied in vectors, the statistics in vectors of LANES pixels; and
`float_exact`, the bound that allows it."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm.s_tir import Schedule

from compile.kernels.attrs import LANES
from compile.kernels.stem import FLOAT_LANES, StemConv, pool_kernel, stats_kernel
from compile.passes.depthwise_float import float_exact

RNG = np.random.default_rng(5)
W_SHAPE = (4, 3, 3, 3)
FLOAT = StemConv(float_sums=True)


def _run(func: tvm.tirx.PrimFunc, out: np.ndarray, *args: np.ndarray) -> np.ndarray:
    lib = tvm.tirx.build(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target="llvm")
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
    sch = Schedule(stats_kernel((1, 3, 4, 2 * LANES), "uint8", W_SHAPE, 1, FLOAT))
    lane = sch.get_loops(sch.get_sblock("stats_update"))[-1]
    assert sch.get(lane).kind == tvm.tirx.ForKind.VECTORIZED and int(sch.get(lane).extent) == LANES


def test_float_exact_bounds_each_channels_sums() -> None:
    w = np.full(W_SHAPE, 127, np.int8)
    assert float_exact("uint8", w)  # 27 x 255 x 127 = 874,395
    assert not float_exact("uint8", w, np.array([2**24 - 874_395, 0, 0, 0], np.int32))
    assert float_exact("uint8", w, np.array([2**24 - 874_396, 0, 0, 0], np.int32))
    assert float_exact("int8", np.full((8, 1, 3, 3), -128, np.int8))  # depthwise: 9 x 128 x 128
