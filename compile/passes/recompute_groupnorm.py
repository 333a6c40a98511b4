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
tensorized with it: 4 horizontally adjacent pixels of a channel and kernel row per instruction. Only this exact
chain (as TVM's ONNX frontend imports Conv -> Reshape -> InstanceNormalization -> Reshape -> Mul -> Add ->
MaxPool(2, stride 2) -> Relu, after `lower_int8`) is rewritten; anything else is left alone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tvm
from tvm import relax, te, topi
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard
from tvm.s_tir import Schedule

from compile.kernels.attrs import LANES, TENSORIZED_ATTR, mark_scheduled
from compile.kernels.dot_product import padded_channels
from compile.passes.common import Quantizer, op_name, quantizer, with_new_main
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


def _conv(x: te.Tensor, w: te.Tensor, padding: int) -> te.Tensor:
    return topi.nn.conv2d_nchw(x, w, 1, padding, 1, out_dtype="int32")


def _dot_conv(x: te.Tensor, w_shape, padding: int, dot: DotProduct) -> tuple[te.Tensor, te.Tensor]:
    """The conv as dot-product instructions: each takes `dot.depth` horizontally adjacent input pixels of one
    channel and kernel row (the kernel's row zero-padded to that width) for `dot.lanes` output channels.
    Returns the packed weights' placeholder (`_pack_taps`) and the int32 sums [1, H, W, C padded]."""
    c_out, c_in, kh, kw = (int(d) for d in w_shape)
    _, _, h, wd = (int(d) for d in x.shape)
    w = te.placeholder((c_in, kh, padded_channels(c_out, dot), dot.depth), "int8", name="w")
    inside = lambda y, xx: tvm.tirx.all(y >= padding, y < h + padding, xx >= padding, xx < wd + padding)  # noqa: E731
    xp = te.compute((1, c_in, h + 2 * padding, wd + 2 * padding + dot.depth - kw), lambda n, c, y, xx:
                    tvm.tirx.if_then_else(inside(y, xx), x[n, c, y - padding, xx - padding], tvm.tirx.const(0, x.dtype)),
                    name="pad_temp")
    rc, ry, rt = te.reduce_axis((0, c_in), "rc"), te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, dot.depth), "rt")
    acc = te.compute((1, h + 2 * padding - kh + 1, wd + 2 * padding - kw + 1, w.shape[2]), lambda n, y, xx, o: te.sum(
        xp[n, rc, y + ry, xx + rt].astype("int32") * w[rc, ry, o, rt].astype("int32"), axis=[rc, ry, rt]),
        name="conv2d_nchw")
    return w, acc


def _pack_taps(w: np.ndarray, dot: DotProduct) -> np.ndarray:
    """[O, C, KH, KW] weights as `_dot_conv` reads them: [C, KH, O padded, depth], zero beyond KW and O."""
    c_out, c_in, kh, kw = w.shape
    packed = np.zeros((c_in, kh, padded_channels(c_out, dot), dot.depth), np.int8)
    packed[:, :, :c_out, :kw] = w.transpose(1, 2, 0, 3)
    return packed


def _conv_out(x_shape, w_shape, padding: int) -> tuple[int, int, int]:
    """Output channels, height and width of the stride-1 conv."""
    return (int(w_shape[0]), int(x_shape[2]) + 2 * padding - int(w_shape[2]) + 1,
            int(x_shape[3]) + 2 * padding - int(w_shape[3]) + 1)


def _stem_conv(x: te.Tensor, w_shape, padding: int, dot: DotProduct | None) -> tuple[te.Tensor, te.Tensor, Callable]:
    """(weights placeholder, conv tensor, conv(x, w) as a function (c, y, x) of output channel and pixel)."""
    if dot is None:
        w = te.placeholder(w_shape, "int8", name="w")
        acc = _conv(x, w, padding)
        return w, acc, lambda c, y, xx: acc[0, c, y, xx]
    w, acc = _dot_conv(x, w_shape, padding, dot)
    return w, acc, lambda c, y, xx: acc[0, y, xx, c]


def stats_kernel(x_shape, x_dtype: str, w_shape, padding: int, channels_inside: bool = True,
                 dot: DotProduct | None = None) -> tvm.tirx.PrimFunc:
    """[2, C] int64: per channel, sum and sum of squares of conv(x, w) + bias over the image. With `dot`, the
    conv is tensorized with it and w comes packed by `_pack_taps`."""
    x = te.placeholder(x_shape, x_dtype, name="x")
    b = te.placeholder((w_shape[0],), "int32", name="bias")
    w, acc, conv_at = _stem_conv(x, w_shape, padding, dot)
    c_out, h, wd = _conv_out(x_shape, w_shape, padding)
    sum2 = te.comm_reducer(lambda a, b_: (a[0] + b_[0], a[1] + b_[1]),
                           lambda t0, t1: (tvm.tirx.const(0, t0), tvm.tirx.const(0, t1)), name="sum2")
    ry, rx = te.reduce_axis((0, h), "ry"), te.reduce_axis((0, wd), "rx")

    def v(c, y, xx):
        return (conv_at(c, y, xx) + b[c]).astype("int64")

    s1, s2 = te.compute((c_out,), lambda c: sum2((v(c, ry, rx), v(c, ry, rx) * v(c, ry, rx)), axis=[ry, rx]),
                        name="stats")
    out = te.compute((2, c_out), lambda i, c: tvm.tirx.Select(i == 0, s1[c], s2[c]), name="stack")
    sch = Schedule(te.create_prim_func([x, w, b, out]))
    red = sch.get_sblock("stats")
    c, row, col = sch.get_loops(red)
    sch.reorder(row, c, col)  # image rows outside channels: each padded input row band is built once
    _schedule_conv(sch, row, c, channels_inside, dot)
    if dot is not None:  # the sums [pixel, channel]: the channels' sums side by side, in one vector
        sch.reorder(col, c)
    return mark_scheduled(sch.mod["main"], macs=_conv_macs(h, wd, w_shape), recomputed=0)


def pool_kernel(x_shape, x_dtype: str, w_shape, padding: int, quant: Quantizer | None = None,
                channels_inside: bool = True, dot: DotProduct | None = None) -> tvm.tirx.PrimFunc:
    """relu(max_pool_2x2(a_c * (conv(x, w) + bias) + k_c)) [1, C, H/2, W/2]: float32, or quantized by `quant`.
    `dot` as for `stats_kernel`."""
    x = te.placeholder(x_shape, x_dtype, name="x")
    b = te.placeholder((w_shape[0],), "int32", name="bias")
    a = te.placeholder((w_shape[0],), "float32", name="scale")
    k = te.placeholder((w_shape[0],), "float32", name="shift")
    w, acc, conv_at = _stem_conv(x, w_shape, padding, dot)
    c_out, h, wd = _conv_out(x_shape, w_shape, padding)
    z = te.compute((1, c_out, h, wd), lambda n, c, y, xx: (conv_at(c, y, xx) + b[c]).astype("float32") * a[c] + k[c],
                   name="z")
    di, dj = te.reduce_axis((0, 2), "di"), te.reduce_axis((0, 2), "dj")
    pooled = te.compute((1, c_out, h // 2, wd // 2),
                        lambda n, c, i, j: te.max(z[n, c, 2 * i + di, 2 * j + dj], axis=[di, dj]), name="pool")
    def relu(n, c, i, j):
        v = tvm.tirx.Max(pooled[n, c, i, j], tvm.tirx.const(0, "float32"))
        return v if quant is None else quant.apply(v)

    out = te.compute(pooled.shape, relu, name="relu")
    sch = Schedule(te.create_prim_func([x, w, b, a, k, out]))
    sch.compute_inline(sch.get_sblock("z"))
    pool = sch.get_sblock("pool")
    _, c, i, j, _, _ = sch.get_loops(pool)
    if dot is None:
        sch.reorder(i, c)
        sch.reverse_compute_at(sch.get_sblock("relu"), j)
    else:  # the sums are [pixel, channel]: pool each pixel's channels side by side
        sch.reorder(i, j, c)
        sch.reverse_compute_at(sch.get_sblock("relu"), c)
    _schedule_conv(sch, i, c, channels_inside, dot)
    macs = _conv_macs(h, wd, w_shape)
    return mark_scheduled(sch.mod["main"], macs=macs, recomputed=macs)


def _conv_macs(h: int, wd: int, w_shape) -> int:
    return h * wd * int(np.prod([int(d) for d in w_shape]))


def _schedule_conv(sch: Schedule, row, channel, channels_inside: bool, dot: DotProduct | None) -> None:
    """The conv computed for the rows one iteration of loop `row` needs: `_conv_rows`, or with `dot` all
    output channels of each pixel, `dot.lanes` at a time, each tap row as one instruction."""
    conv, pad = sch.get_sblock("conv2d_nchw"), sch.get_sblock("pad_temp")
    if dot is None:
        _conv_rows(sch, conv, pad, row, channel, channels_inside)
        return
    sch.compute_at(conv, row)  # the rows this iteration needs, all channels: [rows,] pixel, channel, taps
    sch.compute_at(pad, row)
    *_, pixel, out_channel, rc, ry, rt = sch.get_loops(conv)
    channels, lanes = sch.split(out_channel, [None, dot.lanes])
    sch.reorder(pixel, channels, rc, ry, lanes, rt)
    sch.decompose_reduction(conv, rc)
    sch.tensorize(lanes, dot.intrinsic)


def _conv_rows(sch: Schedule, conv, pad, row, channel, channels_inside: bool) -> None:
    """Compute the conv for the rows one iteration of loop `row` needs, accumulating along a vectorized row.
    `channels_inside`: every output channel at once, the channel loop inside the kernel taps, so each input
    vector is loaded and widened once for all channels (their accumulators must fit the vector registers);
    else one channel at a time (under loop `channel`)."""
    at = row if channels_inside else channel
    sch.compute_at(conv, at)
    sch.compute_at(pad, row)
    loops = sch.get_loops(conv)
    index = next(i for i, lp in enumerate(loops) if sch.get_sref(lp).same_as(sch.get_sref(at)))
    inner = loops[index + 1:]  # unit loops are gone after compute_at: [ff,] [yy,] xx, rc, ry, rx
    channels = [inner.pop(0)] if channels_inside else []
    *rows, xx, rc, ry, rx = inner
    extent = int(sch.get(xx).extent)
    if extent % LANES == 0:
        outer, lanes = sch.split(xx, [None, LANES])
        sch.reorder(*rows, outer, rc, ry, rx, *channels, lanes)
        sch.vectorize(lanes)
    else:
        sch.reorder(*rows, rc, ry, rx, *channels, xx)
    sch.decompose_reduction(conv, rc)


def recompute_groupnorm(mod: tvm.IRModule, vector_register_bytes: int = 512,
                        dot: DotProduct | None = None) -> tuple[tvm.IRModule, int]:
    """Rewrite each matching stem in `main`; returns the module and how many were rewritten.
    `vector_register_bytes`: the target's SIMD register file; the conv keeps all its output channels' int32
    accumulators (LANES each) in flight where they fit (AVX2, NEON, RVV), one channel at a time where not
    (Helium's 8 registers, scalar cores). `dot`: the target's dot-product instruction, which computes the conv
    where it multiplies the input's type (x86 VNNI: the uint8 pixels) and a kernel row fits its depth."""
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
        inside = c_out * LANES * 4 <= vector_register_bytes
        tensorized = dot if dot is not None and dot.activations == x_dtype and w.shape[3] <= dot.depth else None
        kernels = [stats_kernel(x_shape, x_dtype, w.shape, pads[0], inside, tensorized),
                   pool_kernel(x_shape, x_dtype, w.shape, pads[0], quant, inside, tensorized)]
        if tensorized is not None:
            kernels = [f.with_attr(TENSORIZED_ATTR, dot.mnemonic) for f in kernels]
        gv_stats, gv_pool = (builder.add_func(f, f"{name}_{part}") for f, part in zip(kernels, ("stats", "pool")))
        w_c, b_c = relax.const(w if tensorized is None else _pack_taps(w, dot)), relax.const(bias)
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
