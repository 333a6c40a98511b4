import numpy as np
import onnx
import pytest
import tvm
from conftest import REPO, run_relax
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx
from tvm.script import relax as R

from compile.passes.lower_int8 import float_macs, lower_int8
from compile.passes.op_counts import count_mac_ops
from ucm.data import load_tensors
from ucm.evaluate import onnx_session
from ucm.pairs import find_pairs

INT8_ONNX = REPO / "checkpoints" / "ucm_int8.onnx"


def test_every_conv_and_matmul_becomes_integer_and_matches_onnx_runtime():
    mod = from_onnx(onnx.load(INT8_ONNX), keep_params_in_input=False)
    assert count_mac_ops(mod).float == 53  # the frontend computes QDQ graphs in float
    lowered = lower_int8(mod)
    counts = count_mac_ops(lowered)
    assert (counts.int8, counts.float) == (53, 0)
    vm = relax.VirtualMachine(tvm.compile(lowered, target="llvm"), tvm.cpu())
    session = onnx_session(INT8_ONNX, reference=True)  # the same on every CPU
    data = load_tensors(find_pairs(REPO / "data" / "sample")[:4], 256, progress=False)
    agree = []
    for i in range(len(data)):
        x = (data.images[i : i + 1].float() / 255).numpy()
        ours = vm["main"](tvm.runtime.tensor(x)).numpy()
        ref = session.run(None, {"image": x})[0]
        agree.append(((ours > 0) == (ref > 0)).mean())
    assert np.mean(agree) >= 0.998


def _qdq_function(x_shape, x_dtype: str, x_zp: int, body) -> tvm.IRModule:
    """main(x_q) = body(bb, DQ(x_q)), emitted in one dataflow block; scales are powers of two (exact)."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor(x_shape, x_dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            dx = bb.emit(relax.op.dequantize(x, relax.const(np.float32(0.25)), relax.const(np.array(x_zp, x_dtype)), axis=1))
            out = bb.emit_output(body(bb, dx))
        bb.emit_func_output(out)
    return bb.get()


def _dq_weight(bb, w: np.ndarray, axis: int, zp: int = 0):
    channels = w.shape[axis]
    scale = relax.const((2.0 ** -np.arange(1, channels + 1) % 1 + 0.125).astype(np.float32))
    return bb.emit(relax.op.dequantize(relax.const(w), scale, relax.const(np.full(channels, zp, np.int8)), axis=axis))


RNG = np.random.default_rng(0)
W_CONV = RNG.integers(-128, 128, (4, 3, 3, 3), dtype=np.int8)
W_MAT = RNG.integers(-128, 128, (6, 5), dtype=np.int8)


def _conv_with_bias(bb, dx):
    dw = _dq_weight(bb, W_CONV, 0)
    scale = relax.const((0.25 * (2.0 ** -np.arange(1, 5) % 1 + 0.125)).astype(np.float32))
    db = bb.emit(relax.op.dequantize(relax.const(np.arange(-2, 2, dtype=np.int32) * 1000), scale,
                                     relax.const(np.zeros(4, np.int32)), axis=0))
    conv = bb.emit(relax.op.nn.conv2d(dx, dw, padding=[1, 1, 1, 1]))
    return relax.op.add(conv, relax.op.reshape(db, (1, 4, 1, 1)))


@pytest.mark.parametrize(("dtype", "zp"), [("uint8", 131), ("int8", -7), ("int8", 0)])
def test_input_zero_point_is_folded_exactly(dtype: str, zp: int) -> None:
    """uint8 asymmetric input (ONNX Runtime's default): padded with its zero point, zero point x weight sums
    folded into the int32 bias; the integer conv gives the float QDQ conv's result."""
    before = _qdq_function((1, 3, 6, 6), dtype, zp, _conv_with_bias)
    after = lower_int8(before)
    assert (count_mac_ops(after).int8, count_mac_ops(after).float) == (1, 0)
    assert ("R.nn.pad" in after.script()) == (zp != 0)
    info = np.iinfo(dtype)
    x = RNG.integers(info.min, info.max + 1, (1, 3, 6, 6)).astype(dtype)
    np.testing.assert_allclose(run_relax(after, x), run_relax(before, x), rtol=1e-6, atol=1e-3)


MATMULS = {
    "weight right, bias": lambda bb, dx: relax.op.add(bb.emit(relax.op.matmul(dx, _dq_weight(bb, W_MAT[:5], 1))),
                                                      _bias(bb, 5)),
    "weight right, no bias, float add after": lambda bb, dx: relax.op.add(
        bb.emit(relax.op.matmul(dx, _dq_weight(bb, W_MAT[:5], 1))), relax.const(np.ones(5, np.float32))),
    "transposed weight (Gemm transB)": lambda bb, dx: relax.op.matmul(
        dx, bb.emit(relax.op.permute_dims(_dq_weight(bb, W_MAT.T[:, :5].copy(), 0)))),
    "weight left": lambda bb, dx: relax.op.matmul(_dq_weight(bb, W_MAT[:, :4].copy(), 0), dx),
}


def _bias(bb, n: int):
    scale = relax.const((0.25 * (2.0 ** -np.arange(1, n + 1) % 1 + 0.125)).astype(np.float32))
    return bb.emit(relax.op.dequantize(relax.const(np.arange(n, dtype=np.int32) * 100), scale,
                                       relax.const(np.zeros(n, np.int32)), axis=0))


@pytest.mark.parametrize("form", sorted(MATMULS))
def test_matmul_forms_real_exporters_write(form: str) -> None:
    shape = (1, 4, 3) if form == "weight left" else (1, 7, 5)
    before = _qdq_function(shape, "uint8", 9, MATMULS[form])
    after = lower_int8(before)
    assert (count_mac_ops(after).int8, count_mac_ops(after).float) == (1, 0), form
    x = RNG.integers(0, 256, shape).astype(np.uint8)
    np.testing.assert_allclose(run_relax(after, x), run_relax(before, x), rtol=1e-6, atol=1e-3)


def test_what_stays_float_says_why() -> None:
    def asymmetric_weight(bb, dx):
        return relax.op.nn.conv2d(dx, _dq_weight(bb, W_CONV, 0, zp=5))

    mod = lower_int8(_qdq_function((1, 3, 6, 6), "int8", 0, asymmetric_weight))
    assert [(f.op, f.reason.split(" (")[0]) for f in float_macs(mod)] == [("conv2d", "the weight zero point is not 0")]
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((1, 7, 5), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.matmul(x, _dq_weight(bb, W_MAT[:5], 1)))
        bb.emit_func_output(out)
    assert [f.reason for f in float_macs(lower_int8(bb.get()))] == ["the input is float (not the output of a DequantizeLinear)"]


def test_onnx_gemm_with_transposed_weight_and_bias() -> None:
    """ONNX Gemm(transB=1) with DequantizeLinear inputs, as TVM's frontend imports it (matmul of a
    permute_dims, then the bias add): lowered, and equal to the float QDQ graph."""
    from onnx import TensorProto, helper, numpy_helper

    consts = {"w_q": W_MAT, "w_s": np.float32(0.01), "w_z": np.int8(0), "x_s": np.float32(0.02), "x_z": np.uint8(128),
              "b_q": np.arange(6, dtype=np.int32), "b_s": np.float32(0.0002), "b_z": np.int32(0)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "x_s", "x_z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["wd"]),
             helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_z"], ["bd"]),
             helper.make_node("Gemm", ["xd", "wd", "bd"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 6])],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    before = from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), keep_params_in_input=False)
    after = lower_int8(before)
    assert (count_mac_ops(after).int8, count_mac_ops(after).float) == (1, 0)
    x = RNG.uniform(-2, 2, (3, 5)).astype(np.float32)
    np.testing.assert_allclose(run_relax(after, x), run_relax(before, x), rtol=1e-6, atol=1e-4)
