"""The passes that keep activations int8 between kernels, on small Before / Expected modules (as TVM tests its
own passes), each with a numeric check that Before and After compute the same; and the fusion they lead to."""

from __future__ import annotations

import numpy as np
import tvm
from conftest import run_relax
from tvm import relax
from tvm.script import relax as R

from compile.kernels.fusion import fuse
from compile.passes.int8_dataflow import int8_dataflow
from compile.passes.uint8_input import uint8_input

S, S2 = np.float32(0.05), np.float32(0.1)
RNG = np.random.default_rng(1)


def _dq(bb: relax.BlockBuilder, x: relax.Expr, scale=S) -> relax.Var:
    return bb.emit(relax.op.dequantize(x, relax.const(scale), relax.const(np.int8(0)), axis=1))


def _q(bb: relax.BlockBuilder, y: relax.Expr, scale=S) -> relax.Var:
    return bb.emit(relax.op.quantize(y, relax.const(scale), relax.const(np.int8(0)), axis=1, out_dtype="int8"))


def _before() -> tvm.IRModule:
    """q -> DQ -> permute -> Q (same scale) -> DQ -> {mean, subtract}; DQ(a) + DQ(a) read twice; Q to int8."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((1, 4, 6), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            t = bb.emit(relax.op.permute_dims(_dq(bb, x), [0, 2, 1]))
            y = _dq(bb, _q(bb, t))  # a shared quantizer: Q(DQ(q)) with the same scale is q
            doubled = bb.emit(relax.op.add(y, y))
            centred = bb.emit(relax.op.subtract(doubled, relax.op.mean(doubled, axis=[1], keepdims=True)))
            out = bb.emit_output(_q(bb, centred, S2))
        bb.emit_func_output(out)
    return bb.get()


def _expected() -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((1, 4, 6), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            t = bb.emit(relax.op.permute_dims(x, [0, 2, 1]))  # the transpose moves int8
            mean = bb.emit(relax.op.mean(bb.emit(relax.op.add(_dq(bb, t), _dq(bb, t))), axis=[1], keepdims=True))
            doubled = bb.emit(relax.op.add(_dq(bb, t), _dq(bb, t)))  # recomputed in its second reader
            out = bb.emit_output(_q(bb, bb.emit(relax.op.subtract(doubled, mean)), S2))
        bb.emit_func_output(out)
    return bb.get()


def test_int8_dataflow_structure_and_values() -> None:
    before = _before()
    after, moved = int8_dataflow(before)
    assert moved == 1
    tvm.ir.assert_structural_equal(after, _expected())
    x = RNG.integers(-128, 128, (1, 4, 6)).astype(np.int8)
    np.testing.assert_array_equal(run_relax(after, x), run_relax(before, x))


def test_a_different_scale_is_not_folded() -> None:
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((1, 4, 6), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(_q(bb, _dq(bb, x), S2))  # a real requantize
        bb.emit_func_output(out)
    after, _ = int8_dataflow(bb.get())
    assert after["main"].script().count("R.quantize(") == 1


def test_fusion_stores_int8_between_kernels() -> None:
    """After the pass, the kernel that produces an int8 value ends with its quantize, and each reader starts
    with the dequantize: no kernel writes a float tensor (only the [1, 1, 4] mean)."""
    fused, _ = fuse(int8_dataflow(_before())[0])
    main = fused["main"]
    written = [b.var.ty for blk in main.body.blocks for b in blk.bindings
               if isinstance(b.value, relax.Call) and b.value.op.name == "relax.call_tir"]
    float_outputs = [tuple(int(d) for d in t.shape.values) for t in written if str(t.dtype) == "float32"]
    assert float_outputs == [(1, 1, 4)], written


def _pixels_before(scale: float) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    image = relax.Var("image", R.Tensor((1, 3, 4, 4), "float32"))
    with bb.function("main", [image]):
        with bb.dataflow():
            q = bb.emit(relax.op.quantize(image, relax.const(np.float32(scale)), relax.const(np.uint8(0)),
                                          axis=1, out_dtype="uint8"))
            out = bb.emit_output(bb.emit(relax.op.dequantize(q, relax.const(np.float32(scale)),
                                                             relax.const(np.uint8(0)), axis=1)))
        bb.emit_func_output(out)
    return bb.get()


def test_uint8_input_takes_the_pixels() -> None:
    before = _pixels_before(1 / 255)
    after, changed = uint8_input(before)
    assert changed
    bb = relax.BlockBuilder()
    image = relax.Var("image", R.Tensor((1, 4, 4, 3), "uint8"))  # the caller's bytes, HWC
    with bb.function("main", [image]):
        with bb.dataflow():
            chw = bb.emit(relax.op.permute_dims(image, [0, 3, 1, 2]))
            out = bb.emit_output(bb.emit(relax.op.dequantize(chw, relax.const(np.float32(1 / 255)),
                                                             relax.const(np.uint8(0)), axis=1)))
        bb.emit_func_output(out)
    expected = bb.get()
    expected["main"] = expected["main"].with_attrs(before["main"].attrs) if before["main"].attrs else expected["main"]
    tvm.ir.assert_structural_equal(after, expected)
    pixels = np.arange(48, dtype=np.uint8).reshape(1, 4, 4, 3) * 5
    np.testing.assert_array_equal(run_relax(after, pixels),
                                  run_relax(before, pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255))


def test_uint8_input_leaves_another_scale_alone() -> None:
    before = _pixels_before(1 / 127)
    after, changed = uint8_input(before)
    assert not changed and after is before
