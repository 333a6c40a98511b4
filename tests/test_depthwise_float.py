"""compile.passes.depthwise_float: an int8 depthwise conv accumulates in float32 with the same int32 result
(Before / Expected structure, values at the int8 extremes), what it leaves alone, and its kernel: the input
cast to float and padded in bands of rows, same values as the int32 kernel."""

from __future__ import annotations

import numpy as np
import tvm
from conftest import run_relax
from tvm import relax
from tvm.s_tir import Schedule

from compile.kernels.codegen import workspace_bytes
from compile.kernels.fusion import fuse
from compile.kernels.padding import FLOAT_LANES
from compile.kernels.rules import ROW_BAND, RuleOptions, rule_schedule
from compile.passes.depthwise_float import MIN_WIDTH, depthwise_float

RNG = np.random.default_rng(5)
C, H, W = 3, 40, 16


def _depthwise(weight: np.ndarray, out_dtype: str, groups: int = C, width: int = W) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, C, H, width), "int8"))
    pad = weight.shape[-1] // 2
    with bb.function("main", [x]):
        with bb.dataflow():
            w = relax.const(weight.astype(np.float32) if out_dtype == "float32" else weight)
            conv = relax.op.nn.conv2d(x, w, padding=[pad, pad], groups=groups, out_dtype=out_dtype)
            out = bb.emit_output(relax.op.astype(conv, "int32") if out_dtype == "float32" else conv)
        bb.emit_func_output(out)
    return relax.transform.Normalize()(bb.get())


def _extreme_weight(k: int = 3) -> np.ndarray:
    return RNG.choice(np.array([-127, 127], np.int8), (C, 1, k, k))


def test_depthwise_float_structure_and_values() -> None:
    weight = _extreme_weight()
    before = _depthwise(weight, "int32")
    after, count = depthwise_float(before)
    assert count == 1
    tvm.ir.assert_structural_equal(after, _depthwise(weight, "float32"))
    x = np.full((1, C, H, W), -128, np.int8)  # every sum at its largest magnitude (9 x 128 x 127)
    x[0, :, ::3] = 127
    np.testing.assert_array_equal(run_relax(after, x), run_relax(before, x))


def _biased_depthwise(weight: np.ndarray, bias: np.ndarray, form: str) -> tvm.IRModule:
    """lower_int8's astype(add(conv, b), "float32") with the conv in int32 (form "int32"), in float32 and back
    to int32 ("round trip"), or the conv and the bias added in float32 ("float")."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, C, H, W), "int8"))
    b = bias.reshape(1, C, 1, 1)
    with bb.function("main", [x]):
        with bb.dataflow():
            if form == "int32":
                conv = relax.op.nn.conv2d(x, relax.const(weight), padding=[1, 1], groups=C, out_dtype="int32")
            else:
                conv = relax.op.nn.conv2d(x, relax.const(weight.astype(np.float32)), padding=[1, 1], groups=C,
                                          out_dtype="float32")
            if form == "float":
                out = bb.emit_output(relax.op.add(conv, relax.const(b.astype(np.float32))))
            else:
                conv = conv if form == "int32" else relax.op.astype(conv, "int32")
                out = bb.emit_output(relax.op.astype(relax.op.add(conv, relax.const(b)), "float32"))
        bb.emit_func_output(out)
    return relax.transform.Normalize()(bb.get())


def test_a_bias_on_the_way_back_to_float_is_added_in_float() -> None:
    """No int32 round trip where the sums stay exact with the bias; the int32 add kept where they would not."""
    weight = _extreme_weight()
    bias = np.array([2**20, -(2**20), 7], np.int32)  # 9 x 128 x 127 + 2^20 < 2^24
    before = _biased_depthwise(weight, bias, "int32")
    after, count = depthwise_float(before)
    assert count == 1
    tvm.ir.assert_structural_equal(after, _biased_depthwise(weight, bias, "float"))
    x = np.full((1, C, H, W), -128, np.int8)  # every sum at its largest magnitude
    x[0, :, ::3] = 127
    np.testing.assert_array_equal(run_relax(after, x), run_relax(before, x))
    large = np.array([2**24 - 2**10, 0, 0], np.int32)  # the conv's sums exact, not with this bias
    after, count = depthwise_float(_biased_depthwise(weight, large, "int32"))
    assert count == 1
    tvm.ir.assert_structural_equal(after, _biased_depthwise(weight, large, "round trip"))


def test_depthwise_float_leaves_dense_inexact_and_narrow_convs() -> None:
    dense = _depthwise(RNG.integers(-127, 128, (C, C, 3, 3)).astype(np.int8), "int32", groups=1)
    assert depthwise_float(dense)[1] == 0
    inexact = _depthwise(_extreme_weight(k=33), "int32")  # 1089 x 128 x 127 >= 2^24: float32 could round
    assert depthwise_float(inexact)[1] == 0
    narrow = _depthwise(_extreme_weight(), "int32", width=MIN_WIDTH // 2)
    assert depthwise_float(narrow)[1] == 0


def _kernel(mod: tvm.IRModule) -> tvm.tirx.PrimFunc:
    fused, macs = fuse(mod)
    name, func = next((gv.name_hint, f) for gv, f in fused.functions.items() if isinstance(f, tvm.tirx.PrimFunc))
    return rule_schedule(func, macs[name], RuleOptions())


def _run(func: tvm.tirx.PrimFunc, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    lib = tvm.tirx.build(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target="llvm")
    out = tvm.runtime.tensor(np.zeros((1, C, H, W), np.int32))
    lib["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(weight), out)  # the constant weight: a parameter
    return out.numpy()


def test_float_depthwise_kernel_pads_bands_of_rows_with_the_int32_values() -> None:
    weight = RNG.integers(-127, 128, (C, 1, 3, 3)).astype(np.int8)
    int32_kernel = _kernel(_depthwise(weight, "int32"))
    float_kernel = _kernel(depthwise_float(_depthwise(weight, "int32"))[0])
    x = RNG.integers(-128, 128, (1, C, H, W)).astype(np.int8)
    np.testing.assert_array_equal(_run(float_kernel, x, weight.astype(np.float32)), _run(int32_kernel, x, weight))
    sch = Schedule(float_kernel)
    zeros, copy = sch.get_sblock("pad_temp_pad_const"), sch.get_sblock("pad_temp")
    assert str(sch.get(copy).writes[0].source.dtype) == "float32"
    extents = [int(sch.get(lp).extent) for lp in sch.get_loops(zeros)]
    assert extents[-2:] == [ROW_BAND + 2, W + 2]  # one band of output rows and its two halo rows
    columns = sch.get_loops(copy)[-1]  # the input rows copied (and converted) in vectors
    assert sch.get(columns).kind == tvm.tirx.ForKind.VECTORIZED and int(sch.get(columns).extent) == FLOAT_LANES
    plane = 4 * (H + 2) * (W + 2)
    assert workspace_bytes(tvm.IRModule({"main": float_kernel}))["main"] < plane
