"""A norm's mean and standard deviation from integer sums of its int8 input.

A norm of an int8 tensor `x = (q - zp) * s` (LayerNorm over channels, GroupNorm over groups, the plane norms)
was computed as TVM legalizes it: every element dequantized to float and added, in order, to one float sum
(for the mean, then again for the squared deviations). That is a chain of dependent float additions per
element that no compiler may reorder (the schedule rules split the long ones into partial sums, which changes
their rounding anyway).

The same statistics follow from two integer sums, `S1 = sum(q)` and `S2 = sum(q * q)`, exact in int32 and
vectorized freely (integer addition is associative):

    mean = (S1 - n * zp) * s / n
    var  = (n * S2 - S1 * S1) * s * s / n^2      (exact in int64 up to the last float conversions)
    std  = sqrt(var + eps)

The values are those of the float computation up to its rounding (they are closer to the exact ones: the
float sums round once per element, these round a few times in all), so the bundle's output is no longer
bit-identical to TVM's float legalization; `bench.check` measures the int8 bundle's mIoU against ONNX Runtime.
A residual `x + x` of one int8 value (UCM-Net doubles its residuals) is `(q - zp) * 2s`, exactly.

Both statistics come from one kernel, one pass over q (`norm_stats_kernel`): the executor's kernels have one
output, so it writes them stacked, `[0]` the mean and `[1]` the standard deviation, and the norm reads each
through a slice (fused into the kernel that applies the norm).
"""

from __future__ import annotations

import math

import numpy as np
import tvm
from tvm import relax, te

from compile.kernels.attrs import OpPattern
from compile.passes.common import bound_value, op_name, qparams
from compile.passes.norm_deviation import find_norms, rebind

KERNEL_NAME = "norm_stats_int8"
INT32_MAX = 2**31 - 1


def _sums(q: te.Tensor, axes: tuple[int, ...], name: str, square: bool) -> te.Tensor:
    """sum(q) (or sum(q * q)) over `axes` in int32, the axes kept (size 1)."""
    dims = [int(d) for d in q.shape]
    kept = [1 if a in axes else d for a, d in enumerate(dims)]
    reduce_ = {a: te.reduce_axis((0, dims[a]), f"{name}_r{a}") for a in axes}

    def total(*i: tvm.tirx.PrimExpr) -> tvm.tirx.PrimExpr:
        v = q[tuple(reduce_.get(a, i[a]) for a in range(len(dims)))].astype("int32")
        return te.sum(v * v if square else v, axis=list(reduce_.values()))

    return te.compute(kept, total, name=name)


def norm_stats_kernel(shape: tuple[int, ...], axes: tuple[int, ...], dtype: str, eps: float) -> tvm.tirx.PrimFunc:
    """The mean of (q - zp) * scale over `axes` ([0], from sum(q)) and sqrt(its variance + eps) ([1], from sum(q)
    and sum(q * q)); inputs q, scale [1] float32, zp [1] int32; output [2] + the kept shape."""
    q = te.placeholder(shape, dtype, name="q")
    scale, zp = te.placeholder((1,), "float32", name="scale"), te.placeholder((1,), "int32", name="zp")
    n = math.prod(shape[a] for a in axes)
    s1, s2 = _sums(q, axes, "s1", square=False), _sums(q, axes, "s2", square=True)

    def mean(i: tuple) -> tvm.tirx.PrimExpr:
        return (s1[i] - n * zp[0]).astype("float32") * scale[0] / tvm.tirx.const(n, "float32")

    def std(i: tuple) -> tvm.tirx.PrimExpr:
        deviation = n * s2[i].astype("int64") - s1[i].astype("int64") * s1[i].astype("int64")  # n^2 var / s^2
        var = deviation.astype("float32") / tvm.tirx.const(np.float32(n * n), "float32") * scale[0] * scale[0]
        return te.sqrt(var + tvm.tirx.const(eps, "float32"))

    stats = te.compute((2, *s1.shape), lambda which, *i: tvm.tirx.Select(which == 0, mean(i), std(i)),
                       name="stats")
    # private (named by the pass); a reduction for FuseOps, as `compile.passes.norm_deviation`'s kernel
    func = te.create_prim_func([q, scale, zp, stats]).without_attr("global_symbol")
    return func.with_attr("op_pattern", int(OpPattern.COMM_REDUCE))


def _int8_source(x: relax.Expr, defs: dict) -> tuple[relax.Expr, float, int] | None:
    """(q, scale, zp) if `x` is `dequantize(q)` of an int8 / uint8 q with one scale and zero point, or the sum
    `dequantize(q) + dequantize(q)` of two such of one q (then scale doubled); else None."""
    value = bound_value(x, defs)
    if op_name(value) == "relax.add":
        a, b = (_int8_source(arg, defs) for arg in value.args)
        if a is None or b is None or not a[0].same_as(b[0]) or a[1:] != b[1:]:
            return None
        return a[0], 2 * a[1], a[2]
    quant = qparams(value, "relax.dequantize")
    if quant is None or quant.dtype not in ("int8", "uint8"):
        return None
    return value.args[0], float(np.float32(quant.scale)), quant.zero_point


def _sums_fit(shape: tuple[int, ...], axes: tuple[int, ...], dtype: str) -> bool:
    """Can sum(q * q) over `axes` not overflow int32?"""
    info = np.iinfo(dtype)
    return math.prod(shape[a] for a in axes) * max(info.min ** 2, info.max ** 2) <= INT32_MAX


def integer_norm_stats(mod: tvm.IRModule) -> tuple[tvm.IRModule, int]:
    """Rewrite the mean and standard deviation of each norm of an int8 value (see the module docstring);
    returns the module and how many norms were rewritten."""
    main = mod["main"]
    norms, defs = find_norms(main)
    builder = relax.BlockBuilder(mod)
    kernels: dict[tuple, relax.GlobalVar] = {}
    replaced: dict[relax.Var, relax.Expr] = {}
    before: dict[relax.Var, list[relax.VarBinding]] = {}
    for norm in norms:
        source = _int8_source(norm.x, defs)
        if source is None or norm.mean in replaced:
            continue
        q, scale, zp = source
        shape, dtype = tuple(int(d) for d in q.ty.shape.values), str(q.ty.dtype)
        if not _sums_fit(shape, norm.axes, dtype):
            continue
        key = (shape, norm.axes, dtype, float(np.float32(norm.eps)))
        if key not in kernels:
            kernels[key] = builder.add_func(norm_stats_kernel(*key), KERNEL_NAME)
        kept = [int(d) for d in norm.mean.ty.shape.values]
        stats = relax.DataflowVar("norm_stats", relax.TensorType((2, *kept), "float32"))
        args = [q, relax.const(np.array([scale], np.float32)), relax.const(np.array([zp], np.int32))]
        before[norm.mean] = [relax.VarBinding(stats, relax.call_tir(kernels[key], args, stats.ty))]
        for var, index in ((norm.mean, 0), (norm.std, 1)):
            part = relax.DataflowVar(f"{var.name}_slice", relax.TensorType((1, *kept), "float32"))
            sliced = relax.op.strided_slice(stats, axes=[0], begin=[index], end=[index + 1])
            before.setdefault(var, []).append(relax.VarBinding(part, sliced))
            replaced[var] = relax.op.reshape(part, kept)
    return (rebind(builder, main, replaced, before), len(replaced) // 2) if replaced else (mod, 0)
