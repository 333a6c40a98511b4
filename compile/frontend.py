"""ONNX -> Relax import, with the checks a user needs before TVM's frontend runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import tvm
from google.protobuf.message import DecodeError
from tvm.relax.frontend.onnx import from_onnx
from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

from compile.errors import CompileError


class OnnxFileError(CompileError, ValueError):
    """An ONNX file that is missing, does not decode, or is not a valid model; the message names the file."""


class UnsupportedOpError(CompileError, ValueError):
    """An ONNX node TVM's Relax frontend cannot import, or the static executor cannot run; the message names the
    node and its op."""


# Ops TVM imports but a static executor (fixed shapes, one arena, every op a TIR kernel) cannot run, and why.
STATIC_EXECUTOR_UNSUPPORTED = {
    "NonMaxSuppression": "its output size depends on the data, and a static executor needs fixed shapes",
    "NonZero": "its output size depends on the data, and a static executor needs fixed shapes",
    "Unique": "its output size depends on the data, and a static executor needs fixed shapes",
    "TopK": "TVM 0.27 lowers it to no TIR kernel (its Relax op stays a call the static executor cannot make)",
    "Loop": "control flow is not supported by the static executor",
    "If": "control flow is not supported by the static executor",
    "Scan": "control flow is not supported by the static executor",
}


def load_onnx(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise OnnxFileError(f"{path}: no such ONNX file (export one with python -m quantize.export)")
    try:
        model = onnx.load(str(path))
    except (DecodeError, OSError, ValueError) as e:
        raise OnnxFileError(f"{path}: not an ONNX file (it does not decode as an ONNX model: {e}); export one with "
                         "python -m quantize.export") from e
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, onnx.onnx_cpp2py_export.checker.ValidationError, OSError) as e:
        raise OnnxFileError(f"{path}: not a valid ONNX model: {e}") from e
    return model


def check_supported(model: onnx.ModelProto, path: Path) -> None:
    supported = _get_convert_map()
    for node in model.graph.node:
        if node.op_type not in supported:
            raise UnsupportedOpError(
                f"{path}: node '{node.name}' uses ONNX op '{node.op_type}', which TVM's Relax frontend cannot "
                "import; replace it in the PyTorch model or export with a different opset"
            )
        if node.op_type in STATIC_EXECUTOR_UNSUPPORTED:
            raise UnsupportedOpError(
                f"{path}: node '{node.name}' uses ONNX op '{node.op_type}': {STATIC_EXECUTOR_UNSUPPORTED[node.op_type]}; "
                "remove it from the exported graph (run it on the host after the model)"
            )


def is_quantized(model: onnx.ModelProto) -> bool:
    return any(n.op_type == "DequantizeLinear" for n in model.graph.node)


def mac_node_names(model: onnx.ModelProto) -> list[str]:
    """The ONNX nodes TVM imports as one conv2d / matmul each (2-D Conv, MatMul, Gemm), in graph order."""
    shapes = {init.name: len(init.dims) for init in model.graph.initializer}
    names = []
    for i, node in enumerate(model.graph.node):
        two_d_conv = node.op_type == "Conv" and shapes.get(node.input[1], 4) == 4
        if two_d_conv or node.op_type in ("MatMul", "Gemm"):
            names.append(node.name or f"{node.op_type} #{i}")
    return names


def count_params(model: onnx.ModelProto) -> int:
    """Model parameters: elements of the initializers, not counting quantization scales / zero points or
    int64 shape tensors."""
    qparams = {name for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
               for name in n.input[1:]}
    total = 0
    for init in model.graph.initializer:
        if init.name in qparams or init.data_type == onnx.TensorProto.INT64:
            continue
        total += int(np.prod(init.dims, dtype=np.int64))
    return total


def import_onnx(path: Path) -> tuple[tvm.IRModule, onnx.ModelProto]:
    model = load_onnx(path)
    check_supported(model, path)
    inputs = [i for i in model.graph.input if i.name not in {init.name for init in model.graph.initializer}]
    for i in inputs:
        dims = i.type.tensor_type.shape.dim
        if any(d.dim_value <= 0 for d in dims):
            raise OnnxFileError(f"{path}: input '{i.name}' has a symbolic shape; export with a fixed 1x3xHxW input")
    return from_onnx(model, keep_params_in_input=False), model
