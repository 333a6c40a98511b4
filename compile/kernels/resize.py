"""A 2x bilinear upsample (half-pixel centres, NCHW), legalized with integer source indices.

TOPI's `resize2d` finds each output pixel's source in float: `in_y = (y + 0.5) * 0.5 - 0.5`, its floor cast to
int64 and clamped, and the weight `in_y - floor(in_y)`, about 20 float operations per pixel and axis that
LLVM does not vectorize (UCM-Net's five decoder upsamples and the final one, fused into their readers, took
1.5 ms of 9 on x86-64). For a factor of exactly 2 the same values are integers and constants: the source
rows are `(y - 1) // 2` and the next one (clamped to the image), the weight of the next one 0.75 for even
`y` and 0.25 for odd `y` (exact in float). The interpolation itself is TOPI's, term for term, so the results
are bit-identical; any other resize keeps TOPI's legalization.
"""

from __future__ import annotations

import tvm
from tvm import relax, te
from tvm.relax.transform.legalize_ops.image import _image_resize2d


def _source(o: tvm.tirx.PrimExpr, size: int) -> tuple[tvm.tirx.PrimExpr, tvm.tirx.PrimExpr, tvm.tirx.PrimExpr]:
    """The two source indices of output index `o` along an axis of `size` inputs, and the second's weight."""
    low = tvm.tirx.floordiv(o - 1, 2)
    weight = tvm.tirx.Select(tvm.tirx.floormod(o, 2) == 0, tvm.tirx.const(0.75, "float32"),
                             tvm.tirx.const(0.25, "float32"))
    return tvm.tirx.max(low, 0), tvm.tirx.min(low + 1, size - 1), weight


def _lerp(a: tvm.tirx.PrimExpr, b: tvm.tirx.PrimExpr, t: tvm.tirx.PrimExpr) -> tvm.tirx.PrimExpr:
    return a * (1.0 - t) + b * t  # topi.image.resize's, for the same rounding


def upsample2x_bilinear(x: te.Tensor) -> te.Tensor:
    n, c, h, w = (int(d) for d in x.shape)

    def value(b, ch, y, xx):
        y0, y1, wy = _source(y, h)
        x0, x1, wx = _source(xx, w)
        top = _lerp(x[b, ch, y0, x0], x[b, ch, y0, x1], wx)
        bottom = _lerp(x[b, ch, y1, x0], x[b, ch, y1, x1], wx)
        return _lerp(top, bottom, wy)

    return te.compute((n, c, 2 * h, 2 * w), value, name="resize", tag="injective")


def legalize_resize2d(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    """`upsample2x_bilinear` where the call is one (float32, static shapes, no region of interest); else TOPI's."""
    a, x = call.attrs, call.args[0]
    in_shape = [int(d) for d in x.ty.shape.values] if x.ty.shape is not None else []
    size = call.args[1]
    out = [int(d) for d in size.values] if isinstance(size, relax.ShapeExpr) else []
    if (a.method == "linear" and a.coordinate_transformation_mode == "half_pixel" and a.layout == "NCHW"
            and str(x.ty.dtype) == "float32" and str(call.ty.dtype) == "float32" and len(in_shape) == 4
            and out == [2 * in_shape[2], 2 * in_shape[3]] and all(float(v) == 0 for v in a.roi)):
        return bb.call_te(upsample2x_bilinear, x, primfunc_name_hint="resize2d")
    return _image_resize2d(bb, call)
