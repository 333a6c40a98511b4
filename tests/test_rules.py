"""compile.kernels.rules on small legalized kernels: same values as TVM's unscheduled kernel, and the loop
structure each rule promises (a depthwise conv pads each input plane once, a dense conv one row band per
output row; what a resize reads is computed once)."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.s_tir import Schedule

from compile.kernels.codegen import workspace_bytes
from compile.kernels.fusion import fuse
from compile.kernels.rules import RuleOptions, rule_schedule, schedule_accumulate_rows

RNG = np.random.default_rng(3)
C, H, W = 4, 6, 32


def _conv_kernel(groups: int) -> tvm.tirx.PrimFunc:
    """TVM's legalized int8 3x3 conv (padding 1) of a [1, C, H, W] input, as a PrimFunc."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, C, H, W), "int8"))
    w = relax.Var("w", relax.TensorType((C, C // groups, 3, 3), "int8"))
    with bb.function("main", [x, w]):
        out = bb.emit(relax.op.nn.conv2d(x, w, padding=[1, 1], groups=groups, out_dtype="int32"))
        bb.emit_func_output(out)
    mod = relax.transform.LegalizeOps()(bb.get())
    return next(f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc))


def _run(func: tvm.tirx.PrimFunc, *args: np.ndarray, out_shape, dtype: str = "int32") -> np.ndarray:
    lib = tvm.tirx.build(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target="llvm")
    out = tvm.runtime.tensor(np.zeros(out_shape, dtype))
    lib["main"](*(tvm.runtime.tensor(a) for a in args), out)
    return out.numpy()


def _pad_loops(func: tvm.tirx.PrimFunc) -> list[tuple[str, int]]:
    """(loop variable, extent) of the loops around the padding block, outermost first."""
    sch = Schedule(func)
    return [(sch.get(lp).loop_var.name, int(sch.get(lp).extent)) for lp in sch.get_loops(sch.get_sblock("pad_temp"))]


@pytest.mark.parametrize("groups", [C, 1])
def test_accumulate_rows_keeps_the_values(groups: int) -> None:
    func = _conv_kernel(groups)
    x = RNG.integers(-128, 128, (1, C, H, W)).astype(np.int8)
    w = RNG.integers(-128, 128, (C, C // groups, 3, 3)).astype(np.int8)
    expected = _run(func, x, w, out_shape=(1, C, H, W))
    np.testing.assert_array_equal(_run(schedule_accumulate_rows(func), x, w, out_shape=(1, C, H, W)), expected)


def test_depthwise_pads_each_plane_once() -> None:
    """Row by row, each padded input row would be built three times (once per output row reading it)."""
    loops = _pad_loops(schedule_accumulate_rows(_conv_kernel(groups=C)))
    assert [name for name, _ in loops][:2] == ["nn", "ff"]  # under the channel loop, outside the rows
    assert np.prod([n for _, n in loops[2:]]) == (H + 2) * (W + 2)  # the whole padded plane, once


def test_dense_conv_pads_a_row_band_per_output_row() -> None:
    loops = _pad_loops(schedule_accumulate_rows(_conv_kernel(groups=1)))
    assert [name for name, _ in loops][:2] == ["nn", "yy"]
    assert np.prod([n for _, n in loops[2:]]) == C * 3 * (W + 2)


def _norm_then_resize_kernel() -> tvm.tirx.PrimFunc:
    """One fused kernel: x * 0.5 + 1 quantized to int8, dequantized and upsampled 2x (bilinear)."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, C, H, W), "float32"))
    scale, zero = relax.const(np.float32(0.05)), relax.const(np.int8(0))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.add(relax.op.multiply(x, relax.const(np.float32(0.5))), relax.const(np.float32(1))))
            q = bb.emit(relax.op.quantize(y, scale, zero, axis=1, out_dtype="int8"))
            up = bb.emit(relax.op.image.resize2d(relax.op.dequantize(q, scale, zero, axis=1), (2 * H, 2 * W),
                                                 method="linear", coordinate_transformation_mode="half_pixel"))
            out = bb.emit_output(up)
        bb.emit_func_output(out)
    fused, _ = fuse(bb.get())
    return next(f for f in fused.functions.values() if isinstance(f, tvm.tirx.PrimFunc))


def test_a_value_a_resize_reads_is_computed_once() -> None:
    """Inlined into the resize, the quantized value (and all before it) is computed for each of 4 taps."""
    func = _norm_then_resize_kernel()
    scheduled = rule_schedule(func, macs=0)
    sch = Schedule(scheduled)
    blocks = [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
    assert blocks == ["quantized", "resize"], blocks
    x = RNG.standard_normal((1, C, H, W)).astype(np.float32)
    np.testing.assert_array_equal(_run(scheduled, x, out_shape=(1, C, 2 * H, 2 * W), dtype="float32"),
                                  _run(func, x, out_shape=(1, C, 2 * H, 2 * W), dtype="float32"))


def _resize_then_tokens_kernel() -> tvm.tirx.PrimFunc:
    """One fused decoder kernel: an int8 value upsampled 2x, ReLU, quantized, transposed into tokens."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, C, H, W), "float32"))
    scale, zero = relax.const(np.float32(0.05)), relax.const(np.int8(0))
    with bb.function("main", [x]):
        with bb.dataflow():
            q = bb.emit(relax.op.quantize(relax.op.multiply(x, relax.const(np.float32(0.5))), scale, zero, axis=1,
                                          out_dtype="int8"))
            up = bb.emit(relax.op.image.resize2d(relax.op.dequantize(q, scale, zero, axis=1), (2 * H, 2 * W),
                                                 method="linear", coordinate_transformation_mode="half_pixel"))
            q2 = bb.emit(relax.op.quantize(relax.op.nn.relu(up), scale, zero, axis=1, out_dtype="int8"))
            tokens = bb.emit(relax.op.permute_dims(relax.op.reshape(q2, (1, C, 4 * H * W)), [0, 2, 1]))
            out = bb.emit_output(tokens)
        bb.emit_func_output(out)
    fused, _ = fuse(bb.get())
    return next(f for f in fused.functions.values() if isinstance(f, tvm.tirx.PrimFunc))


def test_a_resize_result_is_computed_by_rows_two_pixels_a_step() -> None:
    """The upsampled int8 value is computed one image row at a time (a row buffer, not the whole tensor),
    split by parity, the parity innermost (each step an even and an odd pixel), so that all but the first and
    last steps of a row read consecutive columns."""
    func = _resize_then_tokens_kernel()
    assert "T.unroll" not in rule_schedule(func, macs=0).script()  # a target without `resize_rows`
    scheduled = rule_schedule(func, macs=0, options=RuleOptions(resize_rows=True))
    x = RNG.standard_normal((1, C, H, W)).astype(np.float32)
    shape = (1, 4 * H * W, C)
    np.testing.assert_array_equal(_run(scheduled, x, out_shape=shape, dtype="int8"),
                                  _run(func, x, out_shape=shape, dtype="int8"))
    script = scheduled.script()
    assert script.count("in T.unroll(T.int64(2))") == 3  # 2W = 64 columns, 32 steps of 2: the first 8, the
    assert script.count("_partition") == 3                # middle 16 and the last 8 in 3 loops
    assert "T.vectorized" not in script  # LLVM vectorizes the steps, the two parities interleaved
    sizes = workspace_bytes(tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")}))
    assert sizes["main"] <= C * H * W + C * 2 * W, sizes  # the int8 input once, one upsampled row


def _tokens_to_planes_kernel(requantize: bool) -> tvm.tirx.PrimFunc:
    """Tokens [1, H*W, C] into planes [1, C, H, W], requantized (float arithmetic on the strided reads) or
    only moved."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, H * W, C), "int8"))
    scale, zero = relax.const(np.float32(0.05)), relax.const(np.int8(3))
    with bb.function("main", [x]):
        with bb.dataflow():
            v = x
            if requantize:
                half = relax.op.multiply(relax.op.dequantize(x, scale, zero, axis=1), relax.const(np.float32(0.5)))
                v = relax.op.quantize(half, scale, zero, axis=1, out_dtype="int8")
            out = bb.emit_output(relax.op.reshape(relax.op.permute_dims(v, [0, 2, 1]), (1, C, H, W)))
        bb.emit_func_output(out)
    fused, _ = fuse(bb.get())
    return next(f for f in fused.functions.values() if isinstance(f, tvm.tirx.PrimFunc))


def test_strided_reads_that_are_computed_on_are_vectorized() -> None:
    """With `strided_reads`, a kernel computing on tokens read with a stride of C is vectorized over the
    planes' rows (LLVM leaves it scalar); a plain transpose is left to LLVM, which shuffles it better."""
    func = _tokens_to_planes_kernel(requantize=True)
    assert "T.vectorized" not in rule_schedule(func, macs=0).script()
    scheduled = rule_schedule(func, macs=0, options=RuleOptions(strided_reads=True))
    assert scheduled.script().count("T.vectorized(T.int64(16))") == 1
    x = RNG.integers(-128, 128, (1, H * W, C)).astype(np.int8)
    np.testing.assert_array_equal(_run(scheduled, x, out_shape=(1, C, H, W), dtype="int8"),
                                  _run(func, x, out_shape=(1, C, H, W), dtype="int8"))
    copy = _tokens_to_planes_kernel(requantize=False)
    assert "T.vectorized" not in rule_schedule(copy, macs=0, options=RuleOptions(strided_reads=True)).script()
