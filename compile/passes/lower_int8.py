"""Integer lowering of QDQ convolutions and matrix products, as a Relax rewrite.

TVM's ONNX frontend imports a QCDQ graph as `R.dequantize -> float R.nn.conv2d / R.matmul`, so every
multiply-accumulate would run in float. `lower_int8` rewrites each

    add(conv2d(dequantize(x_q), dequantize(W_q)), reshape(dequantize(b_q)))     (and the matmul form)

into

    multiply(astype(add(conv2d(x_q, W_q, out_dtype="int32"), b_q), "float32"), M)

int8 (or uint8) x int8 products summed in int32, the int32 bias added in the accumulator, and one
per-output-channel multiplier M = scale(x) * scale(W) bringing the result back to float for the float op
that reads it (every convolution and linear layer of UCM-Net feeds a norm, an activation or an addition).
Weights stay int8 constants. Zero points must be 0 (symmetric quantization, as Brevitas exports).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

from compile.errors import CompileError


class LoweringError(CompileError, ValueError):
    """A quantized pattern the integer lowering cannot handle; the message names the op."""


def _const(expr: relax.Expr) -> np.ndarray:
    return expr.value.numpy()


def _patterns():
    x_q = wildcard()
    x_scale, x_zp = is_const(), is_const()
    dq_x = is_op("relax.dequantize")(x_q, x_scale, x_zp)
    w_q, w_scale, w_zp = is_const(), is_const(), is_const()
    dq_w = is_op("relax.dequantize")(w_q, w_scale, w_zp)
    b_q, b_scale, b_zp = is_const(), is_const(), is_const()
    dq_b = is_op("relax.dequantize")(b_q, b_scale, b_zp)
    conv = is_op("relax.nn.conv2d")(dq_x, dq_w)
    conv_bias = is_op("relax.add")(conv, is_op("relax.reshape")(dq_b, wildcard()))
    matmul = is_op("relax.matmul")(dq_x, dq_w)
    matmul_bias = is_op("relax.add")(dq_b, matmul) | is_op("relax.add")(matmul, dq_b)
    parts = {"x_q": x_q, "x_scale": x_scale, "x_zp": x_zp, "w_q": w_q, "w_scale": w_scale, "w_zp": w_zp,
                 "b_q": b_q, "b_scale": b_scale, "b_zp": b_zp, "conv": conv, "matmul": matmul}
    return conv_bias, matmul_bias, parts


def _check_zero(name: str, zp: np.ndarray, op: str) -> None:
    if np.any(zp != 0):
        raise LoweringError(f"{op}: {name} zero point is not 0; integer lowering needs symmetric quantization")


def _rewrite(parts: dict, kind: str, errors: list[LoweringError]):
    """The rewrite callback. Errors are collected, not raised: TVM's FFI would turn them into RuntimeError."""

    def callback(expr: relax.Expr, m: dict) -> relax.Expr:
        try:
            return _lower(expr, m)
        except LoweringError as e:
            errors.append(e)
            return expr

    def _lower(expr: relax.Expr, m: dict) -> relax.Expr:
        x_q, w_q, b_q = m[parts["x_q"]], _const(m[parts["w_q"]]), _const(m[parts["b_q"]])
        op_name = f"{kind} with weight {w_q.shape}"
        for name in ("x_zp", "w_zp", "b_zp"):
            _check_zero(name, _const(m[parts[name]]), op_name)
        if w_q.dtype != np.int8 or b_q.dtype != np.int32 or x_q.ty.dtype not in ("int8", "uint8"):
            raise LoweringError(f"{op_name}: expected int8/uint8 input, int8 weight, int32 bias")
        x_scale = _const(m[parts["x_scale"]]).astype(np.float32).reshape(-1)
        w_scale = _const(m[parts["w_scale"]]).astype(np.float32).reshape(-1)
        b_scale = _const(m[parts["b_scale"]]).astype(np.float32).reshape(-1)
        multiplier = (x_scale * w_scale).astype(np.float32)
        if not np.allclose(b_scale, multiplier, rtol=1e-5, atol=0):
            raise LoweringError(f"{op_name}: bias scale is not input scale x weight scale")
        if kind == "conv2d":
            attrs = m[parts["conv"]].attrs
            acc = relax.op.nn.conv2d(
                x_q, relax.const(w_q), strides=attrs.strides, padding=attrs.padding, dilation=attrs.dilation,
                groups=attrs.groups, data_layout=attrs.data_layout, kernel_layout=attrs.kernel_layout,
                out_layout=attrs.out_layout, out_dtype="int32",
            )
            channel_shape = (1, -1, 1, 1)
        else:
            acc = relax.op.matmul(x_q, relax.const(w_q), out_dtype="int32")
            channel_shape = (-1,)
        acc = relax.op.add(acc, relax.const(b_q.reshape(channel_shape)))
        out = relax.op.multiply(relax.op.astype(acc, "float32"), relax.const(multiplier.reshape(channel_shape)))
        return out

    return callback


def lower_int8(mod: tvm.IRModule) -> tvm.IRModule:
    """Rewrite every QDQ conv2d / matmul of each Relax function into int8 x int8 -> int32 arithmetic.

    A plain function rather than a `tvm.transform` pass so that `LoweringError` reaches the caller as
    itself (TVM's FFI turns exceptions raised inside a pass into RuntimeError).
    """
    conv_bias, matmul_bias, parts = _patterns()
    errors: list[LoweringError] = []
    mod = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
    for gv, func in list(mod.functions.items()):
        if not isinstance(func, relax.Function):
            continue
        func = rewrite_call(conv_bias, _rewrite(parts, "conv2d", errors), func)
        func = rewrite_call(matmul_bias, _rewrite(parts, "matmul", errors), func)
        mod[gv] = func
    if errors:
        raise errors[0]
    return relax.transform.DeadCodeElimination()(mod)
