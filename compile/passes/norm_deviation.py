"""A norm's standard deviation computed once per group, in one pass that reuses the norm's mean.

TVM decomposes a LayerNorm / GroupNorm into `m = mean(x)`, `v = variance(x)`, `s = sqrt(v + eps)` and
`(x - m) / s`. Legalized, `variance` computes its own mean first (a second pass over x), and FuseOps cannot put
the tail `sqrt(v + eps)` after the variance reduction (a reduction fuses only what comes before it), so the
tail lands in the normalizing kernel and runs once per element instead of once per group.

This pass replaces `sqrt(variance(x) + eps)` by one kernel `norm_std(x, m)`: the sum of squared deviations
from the mean `m` the graph already computes, then `sqrt(. / n + eps)`, the tail in the reduction's epilogue.
The operations are TVM's own (`variance` is `mean((x - mean(x))^2)` there), in the same order, so the values
are the same; a pass over x and a square root per element are saved. The kernel is marked a reduction
(kCommReduce, as `compile.kernels.fusion` marks `mean`), so the dequantize of its input fuses into it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax, te
from tvm_ffi import structural_equal

from compile.kernels.attrs import OpPattern
from compile.passes.common import bound_value, definitions, op_name, scalar, with_new_main

KERNEL_NAME = "norm_std"


def norm_std_kernel(shape: tuple[int, ...], axes: tuple[int, ...], eps: float) -> tvm.tirx.PrimFunc:
    """std[i] = sqrt(sum over `axes` of (x - mean[i])^2 / n + eps), mean and std with the axes kept (size 1)."""
    dims = [tvm.tirx.IntImm("int64", d) for d in shape]  # int64 as in TVM's legalized kernels, which FuseTIR merges
    kept = [tvm.tirx.IntImm("int64", 1) if a in axes else d for a, d in enumerate(dims)]
    x = te.placeholder(dims, "float32", name="x")
    mean = te.placeholder(kept, "float32", name="mean")
    reduce_ = {a: te.reduce_axis((tvm.tirx.IntImm("int64", 0), dims[a]), f"r{a}") for a in axes}

    def squares(*i: tvm.tirx.PrimExpr) -> tvm.tirx.PrimExpr:
        d = x[tuple(reduce_.get(a, i[a]) for a in range(len(shape)))] - mean[i]
        return te.sum(d * d, axis=list(reduce_.values()))

    total = te.compute(kept, squares, name="squares")
    n = tvm.tirx.const(math.prod(shape[a] for a in axes), "float32")
    std = te.compute(kept, lambda *i: te.sqrt(total[i] / n + tvm.tirx.const(eps, "float32")), name="std")
    # private (gone once fused); a reduction for FuseOps, so the dequantize of x fuses into it as into `mean`
    return te.create_prim_func([x, mean, std]).without_attr("global_symbol").with_attr(
        "op_pattern", int(OpPattern.COMM_REDUCE))


def _same_value(a: relax.Expr, b: relax.Expr, defs: dict, depth: int = 4) -> bool:
    """Do `a` and `b` compute the same value: the same variable, or the same op with the same attributes on
    arguments that compute the same values (per-reader copies of one dequantize / residual add)?"""
    if a.same_as(b):
        return True
    a, b = bound_value(a, defs), bound_value(b, defs)
    if isinstance(a, relax.Call) and isinstance(b, relax.Call) and depth > 0:
        return (a.op.same_as(b.op) and len(a.args) == len(b.args) and structural_equal(a.attrs, b.attrs)
                and all(_same_value(x, y, defs, depth - 1) for x, y in zip(a.args, b.args)))
    return not isinstance(a, (relax.Var, relax.Call)) and structural_equal(a, b)  # constants, shapes


def _std_of(value: relax.Expr, defs: dict) -> tuple[relax.Expr, tuple[int, ...], float] | None:
    """(x, axes, eps) if `value` is sqrt(variance(x, axes, keepdims) + eps) of a float32 x, else None."""
    if op_name(value) != "relax.sqrt":
        return None
    add = bound_value(value.args[0], defs)
    if op_name(add) != "relax.add":
        return None
    variance, eps = bound_value(add.args[0], defs), scalar(add.args[1])
    if op_name(variance) != "relax.variance" or eps is None or not variance.attrs.keepdims:
        return None
    x = variance.args[0]
    ndim = len(x.ty.shape.values)
    axes = tuple(sorted(int(a) % ndim for a in variance.attrs.axis))
    return (x, axes, eps) if str(x.ty.dtype) == "float32" else None


@dataclass(frozen=True)
class Norm:
    """A norm's statistics in `main`: `std` is bound to sqrt(variance(x, axes) + eps), `mean` to a mean over the
    same axes of a value that computes the same as x, bound before it."""

    std: relax.Var
    mean: relax.Var
    x: relax.Expr
    axes: tuple[int, ...]
    eps: float


def find_norms(main: relax.Function) -> tuple[list[Norm], dict[relax.Var, tuple[int, relax.Expr]]]:
    """Each norm of `main` whose mean is computed before its standard deviation, and `main`'s bindings
    (variable: (position, value))."""
    defs = definitions(main)
    means = [(pos, var, value) for var, (pos, value) in defs.items()
             if op_name(value) == "relax.mean" and value.attrs.keepdims]
    norms = []
    for var, (pos, value) in defs.items():
        found = _std_of(value, defs)
        if found is None:
            continue
        x, axes, eps = found
        ndim = len(x.ty.shape.values)
        mean = next((m for p, m, v in means if p < pos
                     and tuple(sorted(int(a) % ndim for a in v.attrs.axis)) == axes
                     and _same_value(v.args[0], x, defs)), None)
        if mean is not None:
            norms.append(Norm(var, mean, x, axes, eps))
    return norms, defs


def rebind(builder: relax.BlockBuilder, main: relax.Function, replaced: dict[relax.Var, relax.Expr],
           before: dict[relax.Var, list[relax.VarBinding]] | None = None) -> tvm.IRModule:
    """The module with `main`'s bindings of the variables in `replaced` bound to their new values (the
    kernels those call added to `builder`), the new bindings `before` a variable's inserted before its own,
    and what no longer has a reader removed."""
    before = before or {}

    def bindings(block: relax.BindingBlock) -> list[relax.VarBinding]:
        return [new for b in block.bindings
                for new in [*before.get(b.var, []), relax.VarBinding(b.var, replaced.get(b.var, b.value))]]

    blocks = [relax.DataflowBlock(bindings(block)) if isinstance(block, relax.DataflowBlock)
              else relax.BindingBlock(bindings(block)) for block in main.body.blocks]
    body = relax.SeqExpr(blocks, main.body.body)
    new_main = relax.analysis.remove_all_unused(relax.Function(main.params, body, main.ret_ty, attrs=main.attrs))
    return with_new_main(builder, new_main)


def norm_deviation(mod: tvm.IRModule) -> tuple[tvm.IRModule, int]:
    """Rewrite each `sqrt(variance(x) + eps)` whose `mean(x)` is computed before it; returns the module and
    how many were rewritten."""
    main = mod["main"]
    norms, _ = find_norms(main)
    builder = relax.BlockBuilder(mod)
    kernels: dict[tuple, relax.GlobalVar] = {}
    replaced: dict[relax.Var, relax.Expr] = {}
    for norm in norms:
        shape = tuple(int(d) for d in norm.x.ty.shape.values)
        key = (shape, norm.axes, float(np.float32(norm.eps)))
        if key not in kernels:
            kernels[key] = builder.add_func(norm_std_kernel(shape, norm.axes, norm.eps), KERNEL_NAME)
        replaced[norm.std] = relax.call_tir(kernels[key], [norm.x, norm.mean], norm.mean.ty)
    return (rebind(builder, main, replaced), len(replaced)) if replaced else (mod, 0)
