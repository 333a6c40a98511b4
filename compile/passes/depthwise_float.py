"""A Relax rewrite: each int8 depthwise convolution accumulates in float32, where that is exact.

`lower_int8` leaves a depthwise convolution as `conv2d(x_q, W_q, out_dtype="int32")`, and TVM legalizes it as
int32 products of the widened int8 values. On x86 a 32-bit integer multiply is two micro-operations (AVX-512
`vpmulld`) where a float multiply-add is one, and the input, widened to float once, is read by every tap
without being widened again. Here the convolution becomes

    astype(conv2d(x_q, float32(W_q), out_dtype="float32"), "int32")

with the weights a float32 constant, and `legalize_conv2d` computes a conv2d of an int8 input with float32
output on the input cast to float32 first, in the same kernel (a cast before the conv in Relax would be a
kernel of its own: FuseOps fuses no producer into a convolution), so the padded input is float. (Weights cast
in the kernel were converted at every tap: x86-64 AVX2, 16 x 64x64 0.053 -> 0.043 ms with float constants.)

Every product of two int8 values and every partial sum of a depthwise convolution's taps are integers below
2^24 in magnitude (`float_exact`: max |x| x the channel's sum of |W|; 3x3: at most 9 x 128 x 128 = 147,456), so
float32 represents each exactly, in any order: the int32 result is the same, and so is the bundle's output. The
schedule rule (`compile.kernels.rules.schedule_accumulate_rows`) pads the float input in bands of rows, so its
workspace stays below the int8 plane's. Only where the target measured faster (`CompileTarget.float_depthwise`).

`lower_int8` adds the bias to the int32 sum and converts it back to float32 for the requantization; where every
partial sum stays below 2^24 with the bias too (`float_exact` with it), the bias is added in float32 instead,
the same value without the round trip (x86-64 AVX2 on an AMD EPYC, single kernels: 16 x 64x64 0.052 -> 0.049
ms, 8 x 128x128 0.101 -> 0.096 ms; end to end within noise).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, te, topi
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

from compile.passes.common import with_new_main

EXACT_FLOAT32 = 2**24  # integers of smaller magnitude are exact in float32, and so are their sums below it
# narrower rows stay int32: each tap reads the float row right after it was stored, at another offset, which
# the CPU cannot forward from the store (x86-64 A/B: 48 channels of 8x8 0.0045 -> 0.011 ms in float, 4x4 alike)
MIN_WIDTH = 16


def largest_magnitude(dtype: str) -> int:
    """max |x| over the integer type's values."""
    info = np.iinfo(dtype)
    return max(abs(int(info.min)), abs(int(info.max)))


def float_exact(x_dtype: str, weight: np.ndarray, bias: np.ndarray | None = None) -> bool:
    """Is every partial sum of a convolution's output channel (bias included) below 2^24 for any input of
    `x_dtype`? Each is at most max |x| times the sum of the channel's |W| (weight [O, ...]), plus |bias|."""
    x_max = largest_magnitude(x_dtype)
    w_sums = np.abs(weight.astype(np.int64)).reshape(weight.shape[0], -1).sum(axis=1)
    b = np.zeros(weight.shape[0], np.int64) if bias is None else np.abs(bias.astype(np.int64))
    return bool((x_max * w_sums + b).max(initial=0) < EXACT_FLOAT32)


def _depthwise(conv: relax.Call, weight: np.ndarray) -> bool:
    """A grouped NCHW conv2d with one input channel per output channel and one group per input channel."""
    a = conv.attrs
    groups = int(a.groups)
    return (a.data_layout == "NCHW" and a.kernel_layout == "OIHW" and groups > 1 and weight.ndim == 4
            and weight.shape[0] == groups and weight.shape[1] == 1)


def depthwise_float(mod: tvm.IRModule) -> tuple[tvm.IRModule, int]:
    """Rewrite each int8 depthwise conv2d with int32 output and rows of at least MIN_WIDTH into float32
    accumulation where exact (see the module docstring); returns the module and how many. Where its int32 sum
    only gets a constant bias and goes back to float32 (`lower_int8`'s astype(add(conv, b), "float32")), the
    bias is added in float32 too, when exact with it: no int32 round trip (two conversions and an add a vector)."""
    x_pattern, w_pattern, b_pattern = wildcard(), is_const(), is_const()
    conv_pattern = is_op("relax.nn.conv2d")(x_pattern, w_pattern)
    biased_pattern = is_op("relax.astype")(is_op("relax.add")(conv_pattern, b_pattern))
    count = 0

    def float_conv(conv: relax.Call, x: relax.Expr, weight: np.ndarray, bias: np.ndarray | None) -> relax.Expr | None:
        x_dtype = str(x.ty.dtype)
        if (str(conv.attrs.out_dtype) != "int32" or x_dtype not in ("int8", "uint8") or weight.dtype != np.int8
                or not _depthwise(conv, weight) or not float_exact(x_dtype, weight, bias)
                or int(x.ty.shape.values[-1]) < MIN_WIDTH):
            return None
        nonlocal count
        count += 1
        a = conv.attrs
        return relax.op.nn.conv2d(x, relax.const(weight.astype(np.float32)), strides=a.strides, padding=a.padding,
                                  dilation=a.dilation, groups=a.groups, data_layout="NCHW", kernel_layout="OIHW",
                                  out_dtype="float32")

    def biased(expr: relax.Call, m: dict) -> relax.Expr:
        bias, weight = m[b_pattern].value.numpy(), m[w_pattern].value.numpy()
        if str(expr.attrs.dtype) != "float32" or bias.dtype != np.int32 or bias.size != weight.shape[0]:
            return expr
        conv = float_conv(m[conv_pattern], m[x_pattern], weight, bias.reshape(-1))
        return expr if conv is None else relax.op.add(conv, relax.const(bias.astype(np.float32)))

    def plain(expr: relax.Call, m: dict) -> relax.Expr:
        conv = float_conv(expr, m[x_pattern], m[w_pattern].value.numpy(), None)
        return expr if conv is None else relax.op.astype(conv, "int32")

    main = rewrite_call(conv_pattern, plain, rewrite_call(biased_pattern, biased, mod["main"]))
    return (with_new_main(relax.BlockBuilder(mod), main), count) if count else (mod, 0)


def legalize_conv2d(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    """A conv2d of an int8 / uint8 input with float32 output (this pass's form): TOPI's conv on the input (and
    int weights) cast to float32 in the same kernel; any other conv2d as TVM legalizes it."""
    x, w = call.args
    if str(x.ty.dtype) not in ("int8", "uint8") or str(call.attrs.out_dtype) != "float32":
        return call.op.get_attr("FLegalize")(bb, call)
    a = call.attrs

    def conv(x_q: te.Tensor, w: te.Tensor, **attrs) -> te.Tensor:
        return topi.nn.conv(topi.cast(x_q, "float32"), topi.cast(w, "float32") if w.dtype != "float32" else w,
                            **attrs)

    return bb.call_te(conv, x, w, stride=a.strides, padding=a.padding, dilation=a.dilation, groups=a.groups,
                      data_layout=a.data_layout, kernel_layout=a.kernel_layout, out_dtype="float32",
                      primfunc_name_hint="conv2d")
