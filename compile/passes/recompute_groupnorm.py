"""A Relax rewrite that keeps a full-resolution convolution's float output out of memory.

UCM-Net's stem is `GroupNorm(conv3x3(image)) -> max-pool 2x2 -> ReLU` at full resolution: as TVM imports it,
the conv's float output (8 x 256 x 256 x 4 bytes = 2 MiB) and the normalized copy are whole tensors, the
largest in the network by four times. GroupNorm is a per-channel affine map once its group statistics are
known, so the chain is rewritten into two kernels that each *recompute* the int8 convolution row by row:

1. `stats`: per output channel, the sum and the sum of squares of the int32 accumulators (conv + bias),
   exact in int64;
2. from those, in float64 (a handful of values): per-channel scale a_c and shift k_c with
   GroupNorm(M_c * acc_c) * gamma_c + beta_c = a_c * acc_c + k_c;
3. `pool`: conv again, a_c * acc + k_c, max-pool 2x2, ReLU, written at quarter size (as int8 when a per-tensor
   quantize follows: the quantize is computed in the kernel, as TVM legalizes it).

The price is the stem convolution computed twice; the float conv output is never stored. Where the target
has an int8 dot-product instruction that multiplies the image's uint8 pixels (x86 VNNI), the conv is
tensorized with it; where it has none and the target measured it faster, the conv accumulates in float32,
exactly (`compile.kernels.stem`, which holds the two kernels). Only this exact
chain (as TVM's ONNX frontend imports Conv -> Reshape -> InstanceNormalization -> Reshape -> Mul -> Add ->
MaxPool(2, stride 2) -> Relu, after `lower_int8`) is rewritten; anything else is left alone.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

from compile.kernels.attrs import LANES, TENSORIZED_ATTR
from compile.kernels.stem import StemConv, dot_chains, pool_kernel, stats_kernel, stem_weights
from compile.passes.common import op_name, quantizer, with_new_main
from compile.passes.depthwise_float import float_exact
from compile.toolchains import DotProduct


def _value(expr: relax.Expr) -> np.ndarray | None:
    """A constant's value, also through a reshape of a constant (how the frontend passes norm weights)."""
    if isinstance(expr, tvm.ir.expr.Constant):
        return expr.value.numpy()
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == "relax.reshape":
        inner = _value(expr.args[0])
        return None if inner is None else inner.reshape([int(d) for d in expr.args[1].values])
    return None


def _pattern() -> tuple[relax.dpl.DFPattern, dict]:
    p = {name: wildcard() for name in ("x", "g1", "b1", "shape1", "shape2")}
    p |= {name: is_const() for name in ("w", "bias", "mult", "eps", "gamma", "beta")}
    p["conv"] = is_op("relax.nn.conv2d")(p["x"], p["w"])
    y = is_op("relax.multiply")(is_op("relax.astype")(is_op("relax.add")(p["conv"], p["bias"])), p["mult"])
    grouped = is_op("relax.reshape")(y, p["shape1"])
    p["grouped"] = grouped
    centred = is_op("relax.subtract")(grouped, is_op("relax.mean")(grouped))
    std = is_op("relax.sqrt")(is_op("relax.add")(is_op("relax.variance")(grouped), p["eps"]))
    normed = is_op("relax.add")(is_op("relax.multiply")(is_op("relax.divide")(centred, std), p["g1"]), p["b1"])
    chw = is_op("relax.reshape")(normed, p["shape2"])
    affine = is_op("relax.add")(is_op("relax.multiply")(chw, p["gamma"]), p["beta"])
    p["pool"] = is_op("relax.nn.max_pool2d")(affine)
    p["relu"] = relu = is_op("relax.nn.relu")(p["pool"])
    return is_op("relax.quantize")(relu, is_const(), is_const()) | relu, p


def recompute_groupnorm(mod: tvm.IRModule, vector_register_bytes: int = 512, dot: DotProduct | None = None,
                        float_sums: bool = False) -> tuple[tvm.IRModule, int]:
    """Rewrite each matching stem in `main`; returns the module and how many were rewritten.
    `vector_register_bytes`: the target's SIMD register file; the conv keeps all its output channels' int32
    accumulators (LANES each) in flight where they fit (AVX2, NEON, RVV), one channel at a time where not
    (Helium's 8 registers, scalar cores). `dot`: the target's dot-product instruction, which computes the conv
    where it multiplies the input's type (x86 VNNI: the uint8 pixels) and a kernel row fits its depth.
    `float_sums`: else, the conv accumulates in float32 where every sum is exact (`float_exact`)."""
    pattern, p = _pattern()
    readers: dict[relax.Expr, list[relax.Expr]] = {}  # each bound call -> the calls that read its result
    bound = relax.analysis.get_var2val(mod["main"])
    for value in bound.values():
        for var in relax.analysis.free_vars(value):
            if var in bound:
                readers.setdefault(bound[var], []).append(value)
    count = 0
    builder = relax.BlockBuilder(mod)  # gives the new kernels typed global vars

    def callback(expr: relax.Expr, m: dict) -> relax.Expr:
        nonlocal count
        conv = m[p["conv"]]
        pool = m[p["pool"]]
        x = m[p["x"]]
        cattrs, pattrs = conv.attrs, pool.attrs
        g1, b1 = _value(m[p["g1"]]), _value(m[p["b1"]])
        pads = [int(v) for v in cattrs.padding]
        simple_conv = (int(cattrs.groups) == 1 and [int(v) for v in cattrs.strides] == [1, 1]
                       and [int(v) for v in cattrs.dilation] == [1, 1] and len(set(pads)) == 1
                       and cattrs.data_layout == "NCHW" and str(conv.ty.dtype) == "int32")
        simple_pool = ([int(v) for v in pattrs.pool_size] == [2, 2] and [int(v) for v in pattrs.strides] == [2, 2]
                       and all(int(v) == 0 for v in pattrs.padding) and not pattrs.ceil_mode)
        x_shape = tuple(int(d) for d in x.ty.shape.values)
        if not (simple_conv and simple_pool and g1 is not None and b1 is not None) or x_shape[2] % 2 or x_shape[3] % 2:
            return expr
        w = m[p["w"]].value.numpy()
        bias = m[p["bias"]].value.numpy().reshape(-1).astype(np.int32)
        mult = m[p["mult"]].value.numpy().reshape(-1).astype(np.float64)
        c_out = w.shape[0]
        groups = int(np.prod(g1.shape))
        gamma = m[p["gamma"]].value.numpy().reshape(-1).astype(np.float64)
        beta = m[p["beta"]].value.numpy().reshape(-1).astype(np.float64)
        eps = float(m[p["eps"]].value.numpy())
        if mult.size != c_out or gamma.size != c_out or beta.size != c_out or c_out % groups:
            return expr
        quant = quantizer(expr)
        relu_readers = readers.get(m[p["relu"]], [])
        if quant is not None and len(relu_readers) > 1:
            return expr  # the float ReLU output is read elsewhere too: rewrite the ReLU alone, once
        if quant is None and len(relu_readers) == 1 and op_name(relu_readers[0]) == "relax.quantize":
            return expr  # rewritten together with its quantize
        count += 1
        x_dtype = str(x.ty.dtype)
        name = f"stem{count}"
        tensorized = dot if dot is not None and dot.activations == x_dtype and w.shape[3] <= dot.depth else None
        chains = 1 if tensorized is None else dot_chains(tensorized, x_shape, w.shape, vector_register_bytes)
        conv_kind = StemConv(channels_inside=c_out * LANES * 4 <= vector_register_bytes, dot=tensorized,
                             float_sums=tensorized is None and float_sums and float_exact(x_dtype, w, bias),
                             chains=chains)
        kernels = [stats_kernel(x_shape, x_dtype, w.shape, pads[0], conv_kind),
                   pool_kernel(x_shape, x_dtype, w.shape, pads[0], quant, conv_kind)]
        if tensorized is not None:
            kernels = [f.with_attr(TENSORIZED_ATTR, dot.mnemonic) for f in kernels]
        gv_stats, gv_pool = (builder.add_func(f, f"{name}_{part}") for f, part in zip(kernels, ("stats", "pool")))
        w_c, b_c = relax.const(stem_weights(w, conv_kind)), relax.const(bias)
        stats = relax.call_tir(gv_stats, [x, w_c, b_c], relax.TensorType((2, c_out), "int64"))
        per_group = c_out // groups
        n = float(per_group * x_shape[2] * x_shape[3])
        s = relax.op.astype(stats, "float64")
        s1 = relax.op.reshape(relax.op.multiply(relax.op.strided_slice(s, [0], [0], [1]), relax.const(mult, "float64")), (groups, per_group))
        s2 = relax.op.reshape(relax.op.multiply(relax.op.strided_slice(s, [0], [1], [2]), relax.const(mult * mult, "float64")),
                              (groups, per_group))
        mean = relax.op.divide(relax.op.sum(s1, axis=[1]), relax.const(n, "float64"))
        ex2 = relax.op.divide(relax.op.sum(s2, axis=[1]), relax.const(n, "float64"))
        var = relax.op.maximum(relax.op.subtract(ex2, relax.op.multiply(mean, mean)), relax.const(0.0, "float64"))
        inv = relax.op.divide(relax.const(1.0, "float64"), relax.op.sqrt(relax.op.add(var, relax.const(eps, "float64"))))
        g1c = relax.const(np.repeat(g1.reshape(-1).astype(np.float64), per_group) * gamma, "float64")  # g1 of the channel's group x gamma
        inv_c = relax.op.reshape(relax.op.repeat(relax.op.reshape(inv, (groups, 1)), per_group, axis=1), (c_out,))
        mean_c = relax.op.reshape(relax.op.repeat(relax.op.reshape(mean, (groups, 1)), per_group, axis=1), (c_out,))
        scale = relax.op.multiply(relax.op.multiply(inv_c, g1c), relax.const(mult, "float64"))
        shift = relax.op.subtract(relax.const(np.repeat(b1.reshape(-1).astype(np.float64), per_group) * gamma + beta, "float64"),
                                  relax.op.multiply(relax.op.multiply(mean_c, inv_c), g1c))
        out_shape = (1, c_out, x_shape[2] // 2, x_shape[3] // 2)
        return relax.call_tir(gv_pool, [x, w_c, b_c, relax.op.astype(scale, "float32"), relax.op.astype(shift, "float32")],
                              relax.TensorType(out_shape, "float32" if quant is None else quant.dtype))

    main = rewrite_call(pattern, callback, mod["main"])
    return (with_new_main(builder, main), count) if count else (mod, 0)
