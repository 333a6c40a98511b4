"""A Relax rewrite: each int8 1x1 convolution (UCM-Net's stride-2 patch embeddings and its decoder's channel
mixers) as a matrix product over channels, tensorized with the CPU's dot-product instruction.

A dot-product instruction (x86 `vpdpbusd`, Arm `sdot`) multiplies 4 adjacent int8 inputs of one pixel, but in
NCHW a pixel's channels lie a whole plane apart, so TVM's legalized 1x1 convolution multiplies one channel at a
time in int32 (and, at stride 2, reads every input through a gather). Here the convolution becomes the kernel
of `compile.passes.matmul_nchw` reading the channel-first input: each output row's pixels are first gathered
into token layout (a row of `width x C` int8), then multiplied with the packed weights, tensorized, and written
back channel-first with the same epilogue (bias, rescale, quantize). The products are exact integers and the
epilogue is the same float arithmetic, so the values are the same. Only where the target has a dot-product
instruction, the convolution is at least two instructions deep (`compile.kernels.dot_product.fits`), its
output channels fill whole instructions (the row tile would otherwise shrink to the channels read) and its
result is quantized.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

from compile.kernels.dot_product import fits, offset_bias, pack_weights
from compile.passes.common import quantizer, with_new_main
from compile.passes.matmul_nchw import ChannelFirstInput, matmul_nchw_kernel
from compile.toolchains import DotProduct


def _pattern() -> tuple[relax.dpl.DFPattern, dict]:
    p = {"x": wildcard(), "w": is_const(), "bias": is_const(), "mult": is_const()}
    p["conv"] = is_op("relax.nn.conv2d")(p["x"], p["w"])
    y = is_op("relax.multiply")(is_op("relax.astype")(is_op("relax.add")(p["conv"], p["bias"])), p["mult"])
    p["quantize"] = is_op("relax.quantize")(y, is_const(), is_const())
    return p["quantize"], p  # with its quantize only: matched alone, `y` would be rewritten to a float output


def _stride(conv: relax.Call) -> int | None:
    """The stride of a plain 1x1 NCHW convolution (no padding, dilation or groups), else None."""
    a = conv.attrs
    strides = [int(s) for s in a.strides]
    if (a.data_layout != "NCHW" or a.kernel_layout != "OIHW" or int(a.groups) != 1 or len(set(strides)) != 1
            or any(int(p) for p in a.padding) or any(int(d) != 1 for d in a.dilation)):
        return None
    return strides[0]


def pointwise_conv(mod: tvm.IRModule, dot: DotProduct | None, interleave: bool = False) -> tuple[tvm.IRModule, int]:
    """Rewrite each int8 1x1 convolution (see the module docstring; `interleave`: `matmul_nchw_kernel`'s);
    returns the module and how many."""
    if dot is None:
        return mod, 0
    pattern, p = _pattern()
    builder = relax.BlockBuilder(mod)
    count = 0

    def callback(expr: relax.Expr, m: dict) -> relax.Expr:
        nonlocal count
        x, conv = m[p["x"]], m[p["conv"]]
        weight = m[p["w"]].value.numpy()
        stride = _stride(conv)
        x_shape = tuple(int(d) for d in x.ty.shape.values)
        out_shape = tuple(int(d) for d in expr.ty.shape.values)
        bias = m[p["bias"]].value.numpy().reshape(-1)
        mult = m[p["mult"]].value.numpy().reshape(-1)
        c_out, c_in = weight.shape[:2]
        if (stride is None or weight.shape[2:] != (1, 1) or str(x.ty.dtype) != "int8" or len(x_shape) != 4
                or x_shape[0] != 1 or x_shape[1] != c_in or not fits(c_in, dot) or c_out % dot.lanes
                or bias.size != c_out
                or mult.size != c_out or bias.dtype != np.int32):
            return expr
        quant = quantizer(expr)
        if quant is None:
            return expr
        count += 1
        height, width = out_shape[2:]
        w = weight[:, :, 0, 0].T  # [c_in, c_out], as a token matmul's
        image = ChannelFirstInput(x_shape[2], x_shape[3], stride)
        kernel = matmul_nchw_kernel(height * width, c_in, c_out, height, width, quant, dot, image, interleave)
        gv = builder.add_func(kernel, f"pointwise_conv{count}")
        return relax.call_tir(gv, [x, relax.const(pack_weights(w, dot)),
                                   relax.const(offset_bias(bias, w, dot).astype(np.int32)),
                                   relax.const(mult.astype(np.float32))],
                              relax.TensorType(out_shape, quant.dtype))

    main = rewrite_call(pattern, callback, mod["main"])
    return (with_new_main(builder, main), count) if count else (mod, 0)
