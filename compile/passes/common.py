"""What the Relax rewrites share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax, te


@dataclass(frozen=True)
class Quantizer:
    """A per-tensor `relax.quantize`: out = clip(round(x / scale) + zero_point) in `dtype`."""

    scale: float
    zero_point: int
    dtype: str

    def apply(self, value: tvm.tirx.PrimExpr) -> tvm.tirx.PrimExpr:
        """The quantize of a float32 value, as TVM legalizes `relax.quantize` (so fused and separate agree)."""
        info = np.iinfo(self.dtype)
        q = te.round(value / tvm.tirx.const(self.scale, "float32")) + tvm.tirx.const(self.zero_point, "float32")
        low, high = tvm.tirx.const(info.min, "float32"), tvm.tirx.const(info.max, "float32")
        return tvm.tirx.Min(tvm.tirx.Max(q, low), high).astype(self.dtype)


def op_name(expr: relax.Expr) -> str | None:
    """The operator a call expression calls (None for anything else)."""
    return expr.op.name if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) else None


def quantizer(expr: relax.Expr) -> Quantizer | None:
    """`expr` as a Quantizer if it is a per-tensor quantize with constant scale and zero point."""
    if op_name(expr) != "relax.quantize":
        return None
    scale, zp = expr.args[1], expr.args[2]
    if not all(isinstance(a, tvm.ir.expr.Constant) and a.value.numpy().size == 1 for a in (scale, zp)):
        return None
    return Quantizer(float(scale.value.numpy().reshape(())), int(zp.value.numpy().reshape(())), str(expr.attrs.out_dtype))


def with_new_main(builder: relax.BlockBuilder, main: relax.Function) -> tvm.IRModule:
    """The module a rewrite built: `builder` (made from the original module, holding the kernels the rewrite
    added) with `main` replaced by the rewritten one."""
    out = builder.get()
    out[out.get_global_var("main")] = main
    return relax.transform.Normalize()(out)
