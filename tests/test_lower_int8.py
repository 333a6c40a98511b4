import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tvm
from conftest import REPO
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx
from tvm.script import relax as R

from compile.passes.lower_int8 import LoweringError, lower_int8
from compile.passes.op_counts import count_mac_ops
from ucm.data import load_tensors
from ucm.pairs import find_pairs

INT8_ONNX = REPO / "checkpoints" / "ucm_int8.onnx"


def test_every_conv_and_matmul_becomes_integer_and_matches_onnx_runtime():
    mod = from_onnx(onnx.load(INT8_ONNX), keep_params_in_input=False)
    assert count_mac_ops(mod).float == 53  # the frontend computes QDQ graphs in float
    lowered = lower_int8(mod)
    counts = count_mac_ops(lowered)
    assert (counts.int8, counts.float) == (53, 0)
    vm = relax.VirtualMachine(tvm.compile(lowered, target="llvm"), tvm.cpu())
    session = ort.InferenceSession(str(INT8_ONNX), providers=["CPUExecutionProvider"])
    data = load_tensors(find_pairs(REPO / "data" / "sample")[:4], 256, progress=False)
    agree = []
    for i in range(len(data)):
        x = (data.images[i : i + 1].float() / 255).numpy()
        ours = vm["main"](tvm.runtime.tensor(x)).numpy()
        ref = session.run(None, {"image": x})[0]
        agree.append(((ours > 0) == (ref > 0)).mean())
    assert np.mean(agree) >= 0.998


def test_nonzero_zero_point_is_refused():
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((1, 4, 8, 8), "int8"))
    w = relax.const(np.ones((4, 4, 1, 1), np.int8))
    b = relax.const(np.zeros(4, np.int32))
    one, f1 = relax.const(np.float32(1.0)), relax.const(np.ones(4, np.float32))
    with bb.function("main", [x]):
        with bb.dataflow():
            dx = bb.emit(relax.op.dequantize(x, one, relax.const(np.int8(3)), axis=1))
            dw = bb.emit(relax.op.dequantize(w, f1, relax.const(np.zeros(4, np.int8)), axis=0))
            db = bb.emit(relax.op.dequantize(b, f1, relax.const(np.zeros(4, np.int32)), axis=0))
            conv = bb.emit(relax.op.nn.conv2d(dx, dw))
            out = bb.emit_output(relax.op.add(conv, relax.op.reshape(db, (1, 4, 1, 1))))
        bb.emit_func_output(out)
    with pytest.raises(LoweringError, match="x_zp zero point is not 0"):
        lower_int8(bb.get())
