"""Each Relax rewrite on a small function, the way TVM tests its own passes: a Before module, an Expected module
written out here, `tvm.ir.assert_structural_equal`, and a numeric check that Before and After compute the same."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from conftest import run_relax
from tvm import relax
from tvm.script import relax as R

from compile.kernels.stem import pool_kernel, stats_kernel
from compile.passes.lower_int8 import lower_int8
from compile.passes.matmul_nchw import matmul_nchw, matmul_nchw_kernel
from compile.passes.recompute_groupnorm import recompute_groupnorm

RNG = np.random.default_rng(0)
W_CONV = RNG.integers(-20, 20, (4, 3, 3, 3)).astype(np.int8)
BIAS = RNG.integers(-50, 50, 4).astype(np.int32)
W_SCALE = np.array([0.01, 0.02, 0.03, 0.04], np.float32)
X_SCALE = np.float32(0.5)
MULT = (X_SCALE * W_SCALE).astype(np.float32)  # input scale x weight scale, per output channel


def _const(value, dtype: str | None = None) -> relax.Constant:
    return relax.const(value, dtype) if dtype else relax.const(value)


# -- lower_int8 -------------------------------------------------------------------------------------------
def _qdq_conv_before() -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((1, 3, 8, 8), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            dx = bb.emit(relax.op.dequantize(x, _const(X_SCALE), _const(np.int8(0)), axis=1))
            dw = bb.emit(relax.op.dequantize(_const(W_CONV), _const(W_SCALE), _const(np.zeros(4, np.int8)), axis=0))
            db = bb.emit(relax.op.dequantize(_const(BIAS), _const(MULT), _const(np.zeros(4, np.int32)), axis=0))
            conv = bb.emit(relax.op.nn.conv2d(dx, dw, padding=1))
            out = bb.emit_output(relax.op.add(conv, relax.op.reshape(db, (1, 4, 1, 1))))
        bb.emit_func_output(out)
    return bb.get()


def _qdq_conv_expected() -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((1, 3, 8, 8), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            acc = bb.emit(relax.op.nn.conv2d(x, _const(W_CONV), padding=1, out_dtype="int32"))
            acc = bb.emit(relax.op.add(acc, _const(BIAS.reshape(1, 4, 1, 1))))
            out = bb.emit(relax.op.astype(acc, "float32"))
            out = bb.emit_output(relax.op.multiply(out, _const(MULT.reshape(1, 4, 1, 1))))
        bb.emit_func_output(out)
    return bb.get()


def test_lower_int8_structure_and_values() -> None:
    before = _qdq_conv_before()
    after = lower_int8(before)
    tvm.ir.assert_structural_equal(after, _qdq_conv_expected())
    x = RNG.integers(-128, 128, (1, 3, 8, 8)).astype(np.int8)
    np.testing.assert_allclose(run_relax(after, x), run_relax(before, x), rtol=1e-5, atol=1e-4)


# -- recompute_groupnorm ------------------------------------------------------------------------------------
GROUPS, EPS = 2, 1e-5
G1, B1 = np.array([1.5, 0.5], np.float32), np.array([0.1, -0.2], np.float32)
GAMMA, BETA = np.array([1.0, 2.0, 0.5, 1.5], np.float32), np.array([0.0, 0.3, -0.1, 0.2], np.float32)


Q_SCALE = np.float32(0.02)


def _stem_before(quantize: bool = False, second_reader: bool = False) -> tvm.IRModule:
    """int8 conv -> GroupNorm (as the ONNX frontend imports it: reshape, instance norm, reshape, affine) ->
    2x2 max-pool -> ReLU [-> int8 quantize [, and the float ReLU output read by a second op]]."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((1, 3, 8, 8), "uint8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            acc = bb.emit(relax.op.nn.conv2d(x, _const(W_CONV), padding=1, out_dtype="int32"))
            y = bb.emit(relax.op.multiply(relax.op.astype(relax.op.add(acc, _const(BIAS.reshape(1, 4, 1, 1))),
                                                          "float32"), _const(MULT.reshape(1, 4, 1, 1))))
            grouped = bb.emit(relax.op.reshape(y, (1, GROUPS, 128)))
            centred = bb.emit(relax.op.subtract(grouped, relax.op.mean(grouped, axis=[2], keepdims=True)))
            std = bb.emit(relax.op.sqrt(relax.op.add(relax.op.variance(grouped, axis=[2], keepdims=True),
                                                     _const(np.float32(EPS)))))
            normed = bb.emit(relax.op.add(relax.op.multiply(relax.op.divide(centred, std),
                                                            _const(G1.reshape(1, 2, 1))), _const(B1.reshape(1, 2, 1))))
            chw = bb.emit(relax.op.reshape(normed, (1, 4, 8, 8)))
            affine = bb.emit(relax.op.add(relax.op.multiply(chw, _const(GAMMA.reshape(1, 4, 1, 1))),
                                          _const(BETA.reshape(1, 4, 1, 1))))
            pool = bb.emit(relax.op.nn.max_pool2d(affine, pool_size=2, strides=2))
            out = bb.emit(relax.op.nn.relu(pool))
            if quantize:
                q = bb.emit(relax.op.quantize(out, _const(Q_SCALE), _const(np.int8(0)), axis=1, out_dtype="int8"))
                out = bb.emit(relax.op.add(relax.op.dequantize(q, _const(Q_SCALE), _const(np.int8(0)), axis=1), out)
                              if second_reader else q)
            out = bb.emit_output(out)
        bb.emit_func_output(out)
    return bb.get()


def _stem_expected() -> tvm.IRModule:
    """Two kernels that each recompute the conv: channel sums (int64), then conv + per-channel affine + pool +
    ReLU; in between, GroupNorm's scale and shift per channel from the sums, in float64."""
    bb = relax.BlockBuilder()
    stats_gv = bb.add_func(stats_kernel((1, 3, 8, 8), "uint8", (4, 3, 3, 3), 1), "stem1_stats")
    pool_gv = bb.add_func(pool_kernel((1, 3, 8, 8), "uint8", (4, 3, 3, 3), 1), "stem1_pool")
    mult = MULT.astype(np.float64)
    g1c = np.repeat(G1.astype(np.float64), 2) * GAMMA.astype(np.float64)
    b1c = np.repeat(B1.astype(np.float64), 2) * GAMMA.astype(np.float64) + BETA.astype(np.float64)
    x = relax.Var("x", R.Tensor((1, 3, 8, 8), "uint8"))
    f64 = "float64"
    w, b = _const(W_CONV), _const(BIAS)
    stats = relax.op.astype(relax.call_tir(stats_gv, [x, w, b], relax.TensorType((2, 4), "int64")), f64)
    s1 = relax.op.reshape(relax.op.multiply(relax.op.strided_slice(stats, [0], [0], [1]), _const(mult, f64)), (2, 2))
    s2 = relax.op.reshape(relax.op.multiply(relax.op.strided_slice(stats, [0], [1], [2]), _const(mult * mult, f64)),
                          (2, 2))
    mean = relax.op.divide(relax.op.sum(s1, axis=[1]), _const(128.0, f64))
    ex2 = relax.op.divide(relax.op.sum(s2, axis=[1]), _const(128.0, f64))
    var = relax.op.maximum(relax.op.subtract(ex2, relax.op.multiply(mean, mean)), _const(0.0, f64))
    inv = relax.op.divide(_const(1.0, f64), relax.op.sqrt(relax.op.add(var, _const(float(np.float32(EPS)), f64))))
    inv_c = relax.op.reshape(relax.op.repeat(relax.op.reshape(inv, (2, 1)), 2, axis=1), (4,))
    mean_c = relax.op.reshape(relax.op.repeat(relax.op.reshape(mean, (2, 1)), 2, axis=1), (4,))
    scale = relax.op.multiply(relax.op.multiply(inv_c, _const(g1c, f64)), _const(mult, f64))
    shift = relax.op.subtract(_const(b1c, f64), relax.op.multiply(relax.op.multiply(mean_c, inv_c), _const(g1c, f64)))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.call_tir(pool_gv, [x, w, b, relax.op.astype(scale, "float32"),
                                                          relax.op.astype(shift, "float32")],
                                                relax.TensorType((1, 4, 4, 4), "float32")))
        bb.emit_func_output(out)
    return relax.transform.Normalize()(bb.get())


def _check_rewrite(rewrite, before: tvm.IRModule, expected: tvm.IRModule, x: np.ndarray, tolerance: float) -> None:
    """The rewrite changes one place into `expected`, and After computes what Before does (within tolerance)."""
    after, count = rewrite(before)
    assert count == 1
    tvm.ir.assert_structural_equal(after, expected)
    np.testing.assert_allclose(run_relax(after, x), run_relax(before, x), rtol=tolerance, atol=tolerance)


def test_recompute_groupnorm_structure_and_values() -> None:
    x = RNG.integers(0, 256, (1, 3, 8, 8)).astype(np.uint8)
    _check_rewrite(recompute_groupnorm, _stem_before(), _stem_expected(), x, tolerance=1e-4)


def test_recompute_groupnorm_leaves_other_pools_alone() -> None:
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((1, 4, 8, 8), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.nn.relu(relax.op.nn.max_pool2d(x, pool_size=2, strides=2)))
        bb.emit_func_output(out)
    plain = bb.get()
    rewritten, count = recompute_groupnorm(plain)
    assert count == 0 and rewritten is plain


# -- matmul_nchw --------------------------------------------------------------------------------------------
W_TOKENS = RNG.integers(-20, 20, (4, 6)).astype(np.int8)
BIAS_TOKENS = RNG.integers(-50, 50, 6).astype(np.int32)
MULT_TOKENS = np.linspace(0.01, 0.06, 6).astype(np.float32)


def _token_matmul_before(quantize: bool = False) -> tvm.IRModule:
    """An int8 token matmul [1, 64, 4] x [4, 6] whose result goes back to channel-first [1, 6, 8, 8] [quantized
    to int8 first, as `int8_dataflow` leaves it]."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((1, 64, 4), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            acc = bb.emit(relax.op.matmul(x, _const(W_TOKENS), out_dtype="int32"))
            y = bb.emit(relax.op.multiply(relax.op.astype(relax.op.add(acc, _const(BIAS_TOKENS)), "float32"),
                                          _const(MULT_TOKENS)))
            if quantize:
                y = bb.emit(relax.op.quantize(y, _const(Q_SCALE), _const(np.int8(0)), axis=1, out_dtype="int8"))
            out = bb.emit_output(relax.op.reshape(relax.op.permute_dims(y, [0, 2, 1]), (1, 6, 8, 8)))
        bb.emit_func_output(out)
    return bb.get()


def _token_matmul_expected() -> tvm.IRModule:
    bb = relax.BlockBuilder()
    gv = bb.add_func(matmul_nchw_kernel(64, 4, 6, 8, 8), "matmul_nchw1")
    x = relax.Var("x", R.Tensor((1, 64, 4), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.call_tir(gv, [x, _const(W_TOKENS), _const(BIAS_TOKENS), _const(MULT_TOKENS)],
                                                relax.TensorType((1, 6, 8, 8), "float32")))
        bb.emit_func_output(out)
    return relax.transform.Normalize()(bb.get())


def test_matmul_nchw_structure_and_values() -> None:
    x = RNG.integers(-128, 128, (1, 64, 4)).astype(np.int8)
    _check_rewrite(matmul_nchw, _token_matmul_before(), _token_matmul_expected(), x, tolerance=0.0)  # exact


def test_matmul_nchw_ends_with_the_quantize() -> None:
    """A per-tensor quantize of the result is computed in the kernel, which writes int8 channel-first: the
    values of the separate quantize and transpose, up to the kernel's multiplication by the reciprocal scale
    (`compile.kernels.reciprocal`: one level where a value lies within a rounding of a half-way point)."""
    before = _token_matmul_before(quantize=True)
    after, count = matmul_nchw(before)
    assert count == 1 and "R.quantize(" not in after["main"].script()
    x = RNG.integers(-128, 128, (1, 64, 4)).astype(np.int8)
    ours = run_relax(after, x)
    assert ours.dtype == np.int8
    difference = np.abs(ours.astype(np.int32) - run_relax(before, x).astype(np.int32))
    assert difference.max() <= 1 and np.mean(difference > 0) < 0.02


def test_matmul_nchw_interleaved_epilogue_reads_a_token_per_step() -> None:
    """With `interleave` (x86-64), an epilogue of at most 8 channels runs over the row's tokens with each
    token's channels innermost and unrolled (LLVM reads them as one interleaved group); same values."""
    from tvm.s_tir import Schedule

    before = _token_matmul_before(quantize=True)
    plain, _ = matmul_nchw(before)
    after, count = matmul_nchw(before, interleave=True)
    assert count == 1
    sch = Schedule(after["matmul_nchw1"])
    inner = sch.get(sch.get_loops(sch.get_sblock("out"))[-1])
    assert int(inner.extent) == 6 and inner.kind == tvm.tirx.ForKind.UNROLLED
    x = RNG.integers(-128, 128, (1, 64, 4)).astype(np.int8)
    np.testing.assert_array_equal(run_relax(after, x), run_relax(plain, x))
    assert "T.unroll" not in matmul_nchw_kernel(64, 4, 16, 8, 8, interleave=True).script()  # 16 channels


def test_recompute_groupnorm_ends_with_the_quantize() -> None:
    """A per-tensor quantize after the ReLU is computed in the pool kernel, which then writes int8."""
    before = _stem_before(quantize=True)
    after, count = recompute_groupnorm(before)
    assert count == 1 and "R.quantize(" not in after["main"].script()
    assert [gv.name_hint for gv in after.functions if gv.name_hint != "main"] == ["stem1_stats", "stem1_pool"]
    x = RNG.integers(0, 256, (1, 3, 8, 8)).astype(np.uint8)
    ours, theirs = run_relax(after, x), run_relax(before, x)
    assert ours.dtype == np.int8
    assert np.abs(ours.astype(int) - theirs).max() <= 1 and (ours == theirs).mean() > 0.95  # float rounding


def test_recompute_groupnorm_keeps_a_float_relu_read_elsewhere() -> None:
    """When the float ReLU output has another reader, the chain is rewritten once, to float, and the quantize
    stays a kernel of its own (no second copy of the stem)."""
    after, count = recompute_groupnorm(_stem_before(quantize=True, second_reader=True))
    assert count == 1 and after["main"].script().count("R.quantize(") == 1
    assert [gv.name_hint for gv in after.functions if gv.name_hint != "main"] == ["stem1_stats", "stem1_pool"]


@pytest.mark.parametrize("register_bytes", [512, 128])
def test_stem_conv_loop_order_follows_the_vector_registers(register_bytes: int) -> None:
    """With room for all 4 channels' int32 accumulators (4 x LANES x 4 bytes) the recomputed stem conv runs
    the output-channel loop inside the kernel taps (then the vector lanes): an input vector is loaded and
    widened once for all channels. Without (Helium: 128 bytes), one channel at a time."""
    from tvm.s_tir import Schedule

    before = _stem_before(quantize=True)
    after, _ = recompute_groupnorm(before, vector_register_bytes=register_bytes)
    for name in ("stem1_stats", "stem1_pool"):
        sch = Schedule(after[name])
        extents = [int(sch.get(lp).extent) for lp in sch.get_loops(sch.get_sblock("conv2d_nchw_update"))]
        # innermost: in channels and taps (3, 3, 3), then the 4 output channels or not, then the row of 8
        assert extents[-4:] == ([3, 3, 4, 8] if register_bytes == 512 else [3, 3, 3, 8]), extents


def test_recompute_groupnorm_float_sums_give_the_int32_values() -> None:
    """With `float_sums` the stem conv takes float32 weights and accumulates in float32 (every sum here is an
    integer below 2^24): the rewritten stem's output equals the int32 one's, bit for bit."""
    before = _stem_before(quantize=True)
    ints, _ = recompute_groupnorm(before)
    floats, count = recompute_groupnorm(before, float_sums=True)
    assert count == 1
    assert [str(p.ty.dtype) for p in floats["stem1_stats"].params[:2]] == ["uint8", "float32"]
    x = RNG.integers(0, 256, (1, 3, 8, 8)).astype(np.uint8)
    np.testing.assert_array_equal(run_relax(floats, x), run_relax(ints, x))
