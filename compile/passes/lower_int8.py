"""Integer lowering of QDQ convolutions and matrix products, as Relax DPL rewrites.

TVM's ONNX frontend imports a QDQ graph as `R.dequantize -> float R.nn.conv2d / R.matmul`, so every
multiply-accumulate would run in float. One pattern family covers what the int8 exporters write (Brevitas'
QCDQ, ONNX Runtime's `quantize_static` QDQ, Gemm as TVM imports it):

    core = conv2d(DQ(x), DQ(W)) | matmul(DQ(x), W') | matmul(W', DQ(x)),   W' = DQ(W) | permute_dims(DQ(W))
    bias (optional) = add(core, B) | add(B, core),                       B = DQ(b_int32) | reshape(DQ(b_int32))

and each match becomes

    multiply(astype(add(conv2d(pad(x_q, z_x), W_q, out_dtype="int32"), b_q - z_x * sum(W_q)), "float32"), M)

int8 / uint8 x int8 products summed in int32, one per-output-channel multiplier M = scale(x) * scale(W). A
non-zero input zero point z_x (uint8 asymmetric, the ONNX default) is exact: the input is padded with z_x, and
z_x times each output channel's weight sum is folded into the int32 bias at compile time. Weights must be
symmetric (zero point 0), per tensor or per output channel. A bias add in float (ONNX Runtime's MatMul ->
Q/DQ -> Add) stays a float op after the integer product; a `QuantizeLinear` after the product is fused into
its kernel by the fusion step. What cannot be lowered stays float, and `float_macs` says why, per call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

from compile.passes.op_counts import MAC_OPS, is_integer, mac_calls


@dataclass(frozen=True)
class Operands:
    """A QDQ conv2d / matmul taken apart: quantized input, int8 weight (transposed to its use), scales."""

    kind: str  # "conv2d" | "matmul" (weight on the right) | "matmul_left" (weight on the left)
    x_q: relax.Expr
    x_scale: float
    x_zp: int
    w_q: np.ndarray  # int8: OIHW for conv2d, [K, N] for matmul, [M, K] for matmul_left
    w_scale: np.ndarray  # per output channel (broadcast from per-tensor)

    @property
    def channels(self) -> int:
        return self.w_q.shape[1] if self.kind == "matmul" else self.w_q.shape[0]

    def channel_shape(self) -> tuple[int, ...]:
        """Shape that broadcasts a per-channel vector over the op's output."""
        if self.kind == "conv2d":
            return (1, -1, 1, 1)
        return (-1,) if self.kind == "matmul" else (-1, 1)

    def weight_sums(self) -> np.ndarray:
        """Per output channel, the sum of the int8 weights it multiplies (int64)."""
        w = self.w_q.astype(np.int64)
        if self.kind == "conv2d":
            return w.reshape(w.shape[0], -1).sum(axis=1)
        return w.sum(axis=0) if self.kind == "matmul" else w.sum(axis=1)


@dataclass(frozen=True)
class FloatMac:
    """A conv2d / matmul left in float, and why."""

    index: int  # its position among the module's conv2d / matmul calls, in program order
    op: str
    reason: str


Bindings = dict  # relax.Var -> the expression bound to it (relax.analysis.get_var2val)


def _op(expr: relax.Expr, name: str, bound: Bindings) -> relax.Call | None:
    """`expr` (or what the variable `expr` is bound to) if it is a call of the operator `name`."""
    expr = bound.get(expr, expr)
    ok = isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == name
    return expr if ok else None


def _dequantize_parts(expr: relax.Expr, bound: Bindings) -> tuple[relax.Expr, relax.Expr, relax.Expr, int] | None:
    call = _op(expr, "relax.dequantize", bound)
    return None if call is None else (call.args[0], call.args[1], call.args[2], int(call.attrs.axis))


def _value(expr: relax.Expr) -> np.ndarray | None:
    return expr.value.numpy() if isinstance(expr, tvm.ir.expr.Constant) else None


def _dequantized_constant(expr: relax.Expr, bound: Bindings) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | str:
    """(values, scale, zero point, axis) of DQ(constant), or why it is not one."""
    parts = _dequantize_parts(expr, bound)
    if parts is None:
        return "not the output of a DequantizeLinear"
    q, scale, zp = (_value(p) for p in parts[:3])
    if q is None or scale is None or zp is None:
        return "dequantized from a tensor computed at run time, not a constant"
    return q, scale, zp, parts[3]


def _weight(expr: relax.Expr, out_axis: int, bound: Bindings) -> tuple[np.ndarray, np.ndarray] | str:
    """(int8 weight, per-output-channel scale) of DQ(W) or permute_dims(DQ(W)), with W as the op uses it."""
    transpose = _op(expr, "relax.permute_dims", bound)
    transposed = transpose is not None
    weight = _dequantized_constant(transpose.args[0] if transposed else expr, bound)
    if isinstance(weight, str):
        return f"the weight is {weight}"
    q, scale, zp, axis = weight
    if q.dtype != np.int8:
        return f"the weight is {q.dtype}, not int8"
    if np.any(zp != 0):
        return "the weight zero point is not 0 (asymmetric weights are not supported: quantize weights symmetric)"
    if transposed:
        if q.ndim != 2:
            return f"a transposed weight of rank {q.ndim} (only 2-D weights are transposed at compile time)"
        q, axis = q.T, 1 - (axis % 2)
    channels = q.shape[out_axis % q.ndim]
    if scale.size not in (1, channels) or (scale.size > 1 and axis % q.ndim != out_axis % q.ndim):
        return "the weight scale is neither per tensor nor per output channel"
    return q, np.broadcast_to(scale.astype(np.float32).reshape(-1), (channels,)).copy()


def _activation(expr: relax.Expr, bound: Bindings) -> tuple[relax.Expr, float, int] | str:
    parts = _dequantize_parts(expr, bound)
    if parts is None:
        return "the input is float (not the output of a DequantizeLinear)"
    x_q, scale, zp = parts[0], _value(parts[1]), _value(parts[2])
    if scale is None or zp is None or scale.size != 1 or zp.size != 1:
        return "the input's scale or zero point is not one constant (per-tensor activations only)"
    if str(x_q.ty.dtype) not in ("int8", "uint8"):
        return f"the input is {x_q.ty.dtype}, not int8 / uint8"
    return x_q, float(scale.reshape(-1)[0]), int(zp.reshape(-1)[0])


def parse_mac(call: relax.Call, bound: Bindings) -> Operands | str:
    """The operands of a QDQ conv2d / matmul, or why it cannot run in integers. `bound`: the function's
    variable bindings, through which the operands are found."""
    if call.op.name == "relax.nn.conv2d":
        if call.attrs.data_layout != "NCHW" or call.attrs.kernel_layout != "OIHW":
            return f"layout {call.attrs.data_layout} / {call.attrs.kernel_layout} (NCHW / OIHW only)"
        kinds = [("conv2d", call.args[0], call.args[1], 0)]
    else:
        kinds = [("matmul", call.args[0], call.args[1], -1), ("matmul_left", call.args[1], call.args[0], 0)]
    reasons = []
    for kind, x, w, out_axis in kinds:
        weight, activation = _weight(w, out_axis, bound), _activation(x, bound)
        if isinstance(weight, str) or isinstance(activation, str):
            reasons.append(weight if isinstance(weight, str) else activation)
            continue
        if kind != "conv2d" and weight[0].ndim != 2:
            reasons.append(f"a {weight[0].ndim}-D matmul weight (2-D only)")
            continue
        return Operands(kind, *activation, *weight)
    return reasons[0]


def _integer_mac(call: relax.Call, ops: Operands) -> relax.Expr:
    """The int32 conv2d / matmul of `call` on the quantized operands; an input zero point pads with itself."""
    w = relax.const(ops.w_q)
    if ops.kind == "conv2d":
        a = call.attrs
        pads = [int(p) for p in a.padding]
        x = ops.x_q
        if ops.x_zp and any(pads):  # pad with the zero point: padded taps then contribute (z - z) * w = 0
            x = relax.op.nn.pad(x, [0, 0, 0, 0, pads[0], pads[2], pads[1], pads[3]], pad_value=float(ops.x_zp))
            pads = [0, 0, 0, 0]
        return relax.op.nn.conv2d(x, w, strides=a.strides, padding=pads, dilation=a.dilation, groups=a.groups,
                                  data_layout="NCHW", kernel_layout="OIHW", out_dtype="int32")
    if ops.kind == "matmul":
        return relax.op.matmul(ops.x_q, w, out_dtype="int32")
    return relax.op.matmul(w, ops.x_q, out_dtype="int32")


def _lowered(call: relax.Call, ops: Operands, bias: np.ndarray | None) -> relax.Expr:
    shape = ops.channel_shape()
    acc = _integer_mac(call, ops)
    folded = np.zeros(ops.channels, np.int64) if bias is None else bias.astype(np.int64)
    folded -= ops.x_zp * ops.weight_sums()
    if bias is not None or ops.x_zp:
        if np.abs(folded).max(initial=0) >= 2**31:
            raise OverflowError  # not representable in the int32 accumulator: leave it float
        acc = relax.op.add(acc, relax.const(folded.astype(np.int32).reshape(shape)))
    multiplier = (np.float32(ops.x_scale) * ops.w_scale).astype(np.float32)
    return relax.op.multiply(relax.op.astype(acc, "float32"), relax.const(multiplier.reshape(shape)))


def _bias(expr: relax.Expr, ops: Operands, bound: Bindings) -> np.ndarray | None:
    """The int32 bias of DQ(b) or reshape(DQ(b)) if it is on the accumulator's scale, else None."""
    reshape = _op(expr, "relax.reshape", bound)
    bias = _dequantized_constant(reshape.args[0] if reshape is not None else expr, bound)
    if isinstance(bias, str):
        return None
    q, scale, zp, _ = bias
    if q.dtype != np.int32 or np.any(zp != 0) or q.size != ops.channels:
        return None
    expected = np.float32(ops.x_scale) * ops.w_scale
    if not np.allclose(np.broadcast_to(scale.reshape(-1), expected.shape), expected, rtol=1e-5, atol=0):
        return None
    return q.reshape(-1)


def _patterns() -> tuple[relax.dpl.DFPattern, relax.dpl.DFPattern]:
    """(MAC + bias, MAC): where to try. `parse_mac` and `_bias` decide what is lowered."""
    dq_x = is_op("relax.dequantize")(wildcard(), is_const(), is_const())
    dq_w = is_op("relax.dequantize")(is_const(), is_const(), is_const())
    w = dq_w | is_op("relax.permute_dims")(dq_w)
    core = (is_op("relax.nn.conv2d")(dq_x, dq_w) | is_op("relax.matmul")(dq_x, w)
            | is_op("relax.matmul")(w, dq_x))
    dq_b = is_op("relax.dequantize")(is_const(), is_const(), is_const())
    bias = dq_b | is_op("relax.reshape")(dq_b, wildcard())
    return is_op("relax.add")(core, bias) | is_op("relax.add")(bias, core), core


def _rewrite(func: relax.Function, pattern: relax.dpl.DFPattern, with_bias: bool) -> relax.Function:
    bound = relax.analysis.get_var2val(func)

    def callback(expr: relax.Call, _: dict) -> relax.Expr:
        mac, bias = expr, None
        if with_bias:
            first = bound.get(expr.args[0], expr.args[0])
            mac, other = (first, expr.args[1]) if _is_mac(first) else (bound[expr.args[1]], expr.args[0])
        ops = parse_mac(mac, bound)
        if isinstance(ops, str):
            return expr
        if with_bias and (bias := _bias(other, ops, bound)) is None:
            return expr  # the MAC alone is lowered by the next rewrite; the add stays float
        try:
            return _lowered(mac, ops, bias)
        except OverflowError:
            return expr

    return rewrite_call(pattern, callback, func)


def lower_int8(mod: tvm.IRModule) -> tvm.IRModule:
    """Rewrite every QDQ conv2d / matmul of each Relax function into integer arithmetic (with its bias where
    the bias is int32 on the accumulator's scale); what does not fit stays float (see `float_macs`)."""
    with_bias, core = _patterns()
    mod = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
    for gv, func in list(mod.functions.items()):
        if isinstance(func, relax.Function):
            mod[gv] = _rewrite(_rewrite(func, with_bias, True), core, False)
    return relax.transform.DeadCodeElimination()(mod)


def _is_mac(expr: relax.Expr) -> bool:
    return isinstance(expr, relax.Call) and getattr(expr.op, "name", "") in MAC_OPS


def float_macs(mod: tvm.IRModule) -> list[FloatMac]:
    """The conv2d / matmul calls still in float after `lower_int8`, each with the reason."""
    found = []
    bound: Bindings = {}
    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            bound.update(relax.analysis.get_var2val(func))
    for index, call in enumerate(mac_calls(mod)):
        if is_integer(call.args[0]):
            continue
        ops = parse_mac(call, bound)
        reason = ops if isinstance(ops, str) else "the folded bias does not fit the int32 accumulator"
        found.append(FloatMac(index, call.op.name.removeprefix("relax.").removeprefix("nn."), reason))
    return found
