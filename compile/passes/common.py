"""What the Relax rewrites share."""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import relax

from compile.kernels.reciprocal import quantize_value


@dataclass(frozen=True)
class Quantizer:
    """A per-tensor `relax.quantize`: out = clip(round(x * (1 / scale)) + zero_point) in `dtype`."""

    scale: float
    zero_point: int
    dtype: str

    def apply(self, value: tvm.tirx.PrimExpr) -> tvm.tirx.PrimExpr:
        """The quantize of a float32 value, as `compile.kernels.reciprocal` legalizes `relax.quantize` (so
        fused and separate agree)."""
        return quantize_value(value, tvm.tirx.const(self.scale, "float32"),
                              tvm.tirx.const(self.zero_point, "float32"), self.dtype)


def op_name(expr: relax.Expr) -> str | None:
    """The operator a call expression calls (None for anything else)."""
    return expr.op.name if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) else None


def scalar(expr: relax.Expr) -> float | None:
    """The value of a one-element constant (a per-tensor scale or zero point), else None."""
    if isinstance(expr, tvm.ir.expr.Constant) and expr.value.numpy().size == 1:
        return float(expr.value.numpy().reshape(()))
    return None


def quantizer(expr: relax.Expr) -> Quantizer | None:
    """`expr` as a Quantizer if it is a quantize with constant per-tensor scale and zero point."""
    return qparams(expr, "relax.quantize")


def qparams(expr: relax.Expr, op: str) -> Quantizer | None:
    """Scale, zero point and integer type of a per-tensor `op` call (quantize or dequantize), else None."""
    if op_name(expr) != op:
        return None
    scale, zp = scalar(expr.args[1]), scalar(expr.args[2])
    if scale is None or zp is None:
        return None
    dtype = expr.attrs.out_dtype if op == "relax.quantize" else expr.args[0].ty.dtype
    return Quantizer(scale, int(zp), str(dtype))


def definitions(func: relax.Function) -> dict[relax.Var, tuple[int, relax.Expr]]:
    """Each variable bound in `func`: (binding position, bound value)."""
    bindings = [b for block in func.body.blocks for b in block.bindings]
    return {b.var: (i, b.value) for i, b in enumerate(bindings)}


def bound_value(expr: relax.Expr, defs: dict[relax.Var, tuple[int, relax.Expr]]) -> relax.Expr:
    """The value a variable of `defs` is bound to; any other expression itself."""
    return defs[expr][1] if isinstance(expr, relax.Var) and expr in defs else expr


def with_new_main(builder: relax.BlockBuilder, main: relax.Function) -> tvm.IRModule:
    """The module a rewrite built: `builder` (made from the original module, holding the kernels the rewrite
    added) with `main` replaced by the rewritten one."""
    out = builder.get()
    out[out.get_global_var("main")] = main
    return relax.transform.Normalize()(out)
