"""A Relax rewrite that writes a token matmul's output straight in channel-first layout.

UCM-Net's MLP layers work on tokens ([1, H*W, C]) and hand their result back to the convolutional path as
[1, C, H, W]: `reshape(permute_dims(matmul(...)))`. TVM's FuseOps does not fuse a transpose into the matmul
before it, so the token result and its transposed copy are both whole tensors (at 128x128x8 float, 512 KiB
each: the arena's peak once the stem is streamed). Here the int8 matmul (after `lower_int8`) and the
transpose become one kernel: per image row, the matmul tile is computed in token layout (contiguous in the
reduction) and written out transposed, so only a row-sized int32 tile is ever held. Where the result is
quantized (and `compile.passes.int8_dataflow` has moved the transpose onto the int8 value), the quantize is
computed in the kernel too, which then writes int8 channel-first. On a CPU with an int8 dot-product
instruction (`CompileTarget.dot_product`: x86 VNNI, Arm sdot) the reduction is tensorized with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax, te
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard
from tvm.s_tir import Schedule

from compile.kernels.attrs import LANES, TENSORIZED_ATTR, mark_scheduled
from compile.kernels.dot_product import ACTIVATION_OFFSET, fits, offset_bias, pack_weights, padded_channels
from compile.passes.common import Quantizer, quantizer, with_new_main
from compile.toolchains import DotProduct

# The epilogue writes a row of tokens channel-first, reading the int32 row tile [width, channels] at a stride.
# With at most this many channels, each token's are read in one unrolled step and LLVM vectorizes the tokens as
# an interleaved group (wide loads and shuffles; LLVM forms groups of up to 8): in single-kernel A/B on x86-64
# the 16384-token, 8-channel matmul 0.076 -> 0.041 ms; with 16 or 24 channels slower, so not there; on the
# Cortex-M55 (no dot product: the plain matmul) 125.70 -> 125.99 M instructions, so x86-64 only.
INTERLEAVED_CHANNELS = 8


def _pattern() -> tuple[relax.dpl.DFPattern, dict]:
    p = {"x": wildcard(), "w": is_const(), "bias": is_const(), "mult": is_const(), "shape": wildcard()}
    p["matmul"] = is_op("relax.matmul")(p["x"], p["w"])
    y = is_op("relax.multiply")(is_op("relax.astype")(is_op("relax.add")(p["matmul"], p["bias"])), p["mult"])
    p["quantize"] = is_op("relax.quantize")(y, is_const(), is_const())
    p["transpose"] = is_op("relax.permute_dims")(p["quantize"] | y)
    return is_op("relax.reshape")(p["transpose"], p["shape"]), p


@dataclass(frozen=True)
class ChannelFirstInput:
    """The input of a 1x1 convolution: [1, C, height, width], read at every `stride`-th row and column."""

    height: int
    width: int
    stride: int


def matmul_nchw_kernel(tokens: int, c_in: int, c_out: int, height: int, width: int,
                       quant: Quantizer | None = None, dot: DotProduct | None = None,
                       image: ChannelFirstInput | None = None, interleave: bool = False) -> tvm.tirx.PrimFunc:
    """out[0, c, h, w] = float(sum_k x[0, h*width + w, k] * W[k, c] + bias[c]) * mult[c], float32 or quantized
    by `quant`. With a dot-product instruction `dot` (where `c_in` is whole instructions deep), W comes packed
    by `compile.kernels.dot_product.pack_weights` and the reduction is tensorized with it; the bias is then
    `offset_bias`'s. With `image`, x is a 1x1 convolution's channel-first input instead of tokens: each output
    row's pixels are gathered into token layout (`rows`, one row at a time) for the products to read. With
    `interleave` (`CompileTarget.strided_reads`), an epilogue of at most `INTERLEAVED_CHANNELS` channels reads
    each token's in one step."""
    tensorized = fits(c_in, dot)
    if image is None:
        x = source = te.placeholder((1, tokens, c_in), "int8", name="x")
    else:
        source = te.placeholder((1, c_in, image.height, image.width), "int8", name="x")
        x = te.compute((1, tokens, c_in), lambda n, t, k: source[n, k, t // width * image.stride,
                                                                 t % width * image.stride], name="rows")
    b = te.placeholder((c_out,), "int32", name="bias")
    m = te.placeholder((c_out,), "float32", name="mult")
    if tensorized:
        w = te.placeholder((c_in // dot.depth, padded_channels(c_out, dot), dot.depth), "int8", name="w")
        a = x if dot.activations == "int8" else te.compute(
            x.shape, lambda n, t, k: (x[n, t, k].astype("int32") + ACTIVATION_OFFSET).astype("uint8"), name="a")
        ko, ki = te.reduce_axis((0, c_in // dot.depth), "ko"), te.reduce_axis((0, dot.depth), "ki")
        acc = te.compute((1, height, width, w.shape[1]), lambda n, h, wd, c: te.sum(
            a[n, h * width + wd, ko * dot.depth + ki].astype("int32") * w[ko, c, ki].astype("int32"),
            axis=[ko, ki]), name="acc")
    else:
        w = te.placeholder((c_in, c_out), "int8", name="w")
        k = te.reduce_axis((0, c_in), "k")
        acc = te.compute((1, height, width, c_out), lambda n, h, wd, c: te.sum(
            x[n, h * width + wd, k].astype("int32") * w[k, c].astype("int32"), axis=k), name="acc")

    def value(n, c, h, wd):
        v = (acc[n, h, wd, c] + b[c]).astype("float32") * m[c]
        return v if quant is None else quant.apply(v)

    out = te.compute((1, c_out, height, width), value, name="out")
    sch = Schedule(te.create_prim_func([source, w, b, m, out]))
    _, c, h, wd = sch.get_loops(sch.get_sblock("out"))
    sch.reorder(h, c)
    if interleave and c_out <= INTERLEAVED_CHANNELS:  # each token's channels in one step: one LLVM load group
        sch.reorder(wd, c)
        sch.unroll(c)
    sch.compute_at(sch.get_sblock("acc"), h)  # one image row of the matmul, in token layout
    if image is not None and tensorized and dot.activations == "uint8":
        sch.compute_inline(sch.get_sblock("rows"))  # gathered by the +128 stage, per row
    elif image is not None:
        sch.compute_at(sch.get_sblock("rows"), h)
    func = sch.mod["main"]
    if tensorized:
        _tensorize_row(sch, h, dot, gathered=image is not None)
        func = sch.mod["main"].with_attr(TENSORIZED_ATTR, dot.mnemonic)
    return mark_scheduled(func, macs=tokens * c_in * c_out, recomputed=0)


def _tensorize_row(sch: Schedule, row: tvm.s_tir.schedule.LoopRV, dot: DotProduct, gathered: bool) -> None:
    """Per token of the row and `dot.lanes` output channels: the reduction as dot-product instructions (the
    +128 activations, where the instruction wants them, computed once per row)."""
    if dot.activations == "uint8":
        offset = sch.get_sblock("a")
        sch.compute_at(offset, row)
        fused = sch.fuse(*sch.get_loops(offset)[-2:])
        # gathered from a channel-first input: vectors of LANES (a whole row's gather as one vector is huge code)
        sch.vectorize(sch.split(fused, [None, LANES])[1] if gathered else fused)
    acc = sch.get_sblock("acc")
    token, channel, outer, inner = sch.get_loops(acc)[-4:]
    channels, lanes = sch.split(channel, [None, dot.lanes])
    sch.reorder(token, channels, outer, lanes, inner)
    sch.decompose_reduction(acc, outer)
    sch.tensorize(lanes, dot.intrinsic)


def matmul_nchw(mod: tvm.IRModule, dot: DotProduct | None = None,
                interleave: bool = False) -> tuple[tvm.IRModule, int]:
    """Rewrite each int8 token matmul whose result is transposed back to [1, C, H, W], tensorized with the
    dot-product instruction `dot` where given (`interleave`: `matmul_nchw_kernel`'s); returns the module and
    how many were rewritten."""
    pattern, p = _pattern()
    builder = relax.BlockBuilder(mod)
    count = 0

    def callback(expr: relax.Expr, m: dict) -> relax.Expr:
        nonlocal count
        x = m[p["x"]]
        x_shape = tuple(int(d) for d in x.ty.shape.values)
        out_shape = tuple(int(d) for d in expr.ty.shape.values)
        axes = [int(a) for a in m[p["transpose"]].attrs.axes]
        w = m[p["w"]].value.numpy()
        bias = m[p["bias"]].value.numpy().reshape(-1)
        mult = m[p["mult"]].value.numpy().reshape(-1)
        if (len(x_shape) != 3 or x_shape[0] != 1 or str(x.ty.dtype) != "int8" or w.ndim != 2 or axes != [0, 2, 1]
                or len(out_shape) != 4 or out_shape[1] != w.shape[1] or out_shape[2] * out_shape[3] != x_shape[1]
                or bias.size != w.shape[1] or mult.size != w.shape[1] or bias.dtype != np.int32):
            return expr
        quant = quantizer(m[p["quantize"]]) if p["quantize"] in m else None
        if p["quantize"] in m and quant is None:
            return expr
        count += 1
        tokens, c_in = x_shape[1:]
        kernel = matmul_nchw_kernel(tokens, c_in, w.shape[1], out_shape[2], out_shape[3], quant, dot,
                                    interleave=interleave)
        if fits(c_in, dot):
            w, bias = pack_weights(w, dot), offset_bias(bias, w, dot)
        gv = builder.add_func(kernel, f"matmul_nchw{count}")
        return relax.call_tir(gv, [x, relax.const(w), relax.const(bias.astype(np.int32)),
                                   relax.const(mult.astype(np.float32))],
                              relax.TensorType(out_shape, "float32" if quant is None else quant.dtype))

    main = rewrite_call(pattern, callback, mod["main"])
    return (with_new_main(builder, main), count) if count else (mod, 0)
