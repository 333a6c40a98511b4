"""An element-wise int8 -> int8 chain as a lookup table, built once per run instead of evaluated per element.

Between two quantized layers, a normalization or an activation is a float chain on one int8 value:
`quantize((dequantize(q) - mean) / std * gamma + beta)` (a plane norm, two float divisions per element) or
`quantize(dequantize(q) * 0.5 * (1 + erf(dequantize(q) / sqrt(2))))` (GELU, a polynomial per element). Its
result depends only on the element's int8 value and on parameters that are the same along some axes (per
channel, or per tensor). So the chain is evaluated on the 256 possible values for each combination of those
parameters, a table of [parameter axes..., 256] int8, and each element is a lookup (the int8 activation
tables of TFLite and CMSIS-NN, here built at run time because a norm's statistics depend on the image).

The table is computed by the same operations on the same values, so every entry, and so every element, is
bit-identical to the chain's. Where the int8 value is a reshape / permute_dims of another (GELU's planes ->
tokens transpose in UCM-Net), the lookup kernel reads that one through them: no transposed copy first. A chain
is rewritten only where each table entry replaces at least `MIN_ELEMENTS_PER_ENTRY` element evaluations (a
per-token LayerNorm over 8 channels would need a table larger than its input). The pipeline runs this pass only
for targets where it measured faster (`CompileTarget.lookup_tables`): a lookup is a byte gather, and where the
CPU divides 16 floats per instruction (AVX-512) a norm's chain was faster than its per-channel tables built at run time, while GELU's one table
(per tensor, folded at compile time) replaced an `erf` polynomial and a division per element with a lookup
(`per_tensor_only`).
"""

from __future__ import annotations

import math

import numpy as np
import tvm
from tvm import relax, te, topi

from compile.kernels.attrs import OpPattern
from compile.passes.common import bound_value, definitions, op_name, qparams
from compile.passes.int8_dataflow import LAYOUT_OPS

ELEMENTWISE = ("relax.add", "relax.subtract", "relax.multiply", "relax.divide", "relax.erf", "relax.tanh",
               "relax.exp", "relax.sigmoid", "relax.sqrt", "relax.nn.relu", "relax.maximum", "relax.minimum",
               "relax.negative")
MIN_ELEMENTS_PER_ENTRY = 4
KERNEL_NAME = "lookup"


Layout = tuple[tuple[str, tuple[int, ...]], ...]  # ("reshape", new shape) / ("permute_dims", axes), in order


def _laid_out(source: te.Tensor, layout: Layout) -> te.Tensor:
    for op, arg in layout:
        source = topi.reshape(source, arg) if op == "reshape" else topi.transpose(source, arg)
    return source


def lookup_kernel(source_shape: tuple[int, ...], layout: Layout, table_shape: tuple[int, ...], in_dtype: str,
                  out_dtype: str) -> tvm.tirx.PrimFunc:
    """out[i] = table[i along the table's parameter axes (0 where it has size 1), q[i] - min(in_dtype)], q the
    kernel's input after `layout` (GELU's planes -> tokens transpose, read in place instead of copied first)."""
    source = te.placeholder(source_shape, in_dtype, name="q")
    q = _laid_out(source, layout)
    shape = tuple(int(d) for d in q.shape)
    table = te.placeholder(table_shape, out_dtype, name="table")
    offset = -int(np.iinfo(in_dtype).min)

    def entry(*i: tvm.tirx.PrimExpr) -> tvm.tirx.PrimExpr:
        axes = tuple(i[a] if table_shape[a] > 1 else 0 for a in range(len(shape)))
        return table[axes + (q[i].astype("int32") + offset,)]

    out = te.compute(shape, entry, name="lookup")
    # its own kernel: fused with the table's producer, the table would be inlined into each lookup again
    return te.create_prim_func([source, table, out]).without_attr("global_symbol").with_attr(
        "op_pattern", int(OpPattern.OPAQUE))


def _shape(expr: relax.Expr) -> tuple[int, ...] | None:
    shape = getattr(expr.ty, "shape", None)
    if shape is None or not isinstance(shape, relax.ShapeExpr):
        return None
    return tuple(int(d) for d in shape.values)


class _Chain:
    """The leaves of a chain whose full-size inputs all dequantize one int8 value `q`."""

    def __init__(self, shape: tuple[int, ...], defs: dict[relax.Var, tuple[int, relax.Expr]]) -> None:
        self.shape, self.defs = shape, defs
        self.q: relax.Expr | None = None
        self.parameters: set[relax.Expr] = set()  # the small inputs, broadcast over the int8 value's axes
        self.table = [1] * len(shape)  # the parameter axes: where a small input varies

    def collect(self, expr: relax.Expr, depth: int = 16) -> bool:
        value = bound_value(expr, self.defs)
        quant = qparams(value, "relax.dequantize")
        if quant is not None and quant.dtype in ("int8", "uint8") and _shape(value) == self.shape:
            self.q = value.args[0] if self.q is None else self.q
            return self.q.same_as(value.args[0])
        if op_name(value) in ELEMENTWISE and depth > 0:
            return all(self.collect(a, depth - 1) for a in value.args)
        return self._small(expr)

    def _small(self, expr: relax.Expr) -> bool:
        """A parameter that broadcasts over some axes of the full shape (not the int8 value itself)."""
        shape = _shape(expr)
        if shape is None or len(shape) > len(self.shape) or str(expr.ty.dtype) != "float32":
            return False
        aligned = (1,) * (len(self.shape) - len(shape)) + shape
        if any(d not in (1, full) for d, full in zip(aligned, self.shape)) or aligned == self.shape:
            return False
        self.table = [max(t, d) for t, d in zip(self.table, aligned)]
        self.parameters.add(expr)
        return True


def _layout_source(q: relax.Expr, defs: dict) -> tuple[relax.Expr, Layout]:
    """The int8 value `q` is a reshape / permute_dims chain of, and that chain, first op first."""
    layout = []
    value = bound_value(q, defs)
    while op_name(value) in LAYOUT_OPS and value.args[0].ty.dtype == q.ty.dtype:
        arg = value.args[1].values if op_name(value) == "relax.reshape" else value.attrs.axes
        layout.append((op_name(value).removeprefix("relax."), tuple(int(d) for d in arg)))
        q = value.args[0]
        value = bound_value(q, defs)
    return q, tuple(reversed(layout))


@relax.expr_functor.mutator
class _LookupTables(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, defs: dict[relax.Var, tuple[int, relax.Expr]],
                 per_tensor_only: bool) -> None:
        super().__init__(mod)
        self.defs, self.per_tensor_only = defs, per_tensor_only
        self.kernels: dict[tuple, relax.GlobalVar] = {}
        self.count = 0

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        value = binding.value
        quant = qparams(value, "relax.quantize")
        shape = _shape(value)
        chain = _Chain(shape, self.defs) if quant is not None and shape is not None else None
        if chain is None or not chain.collect(value.args[0]) or chain.q is None:
            return super().visit_var_binding_(binding)
        q_type = str(chain.q.ty.dtype)
        levels = np.arange(np.iinfo(q_type).min, np.iinfo(q_type).max + 1).astype(q_type)
        if (math.prod(chain.table) * len(levels) * MIN_ELEMENTS_PER_ENTRY > math.prod(shape)
                or (self.per_tensor_only and math.prod(chain.table) > 1)):
            return super().visit_var_binding_(binding)
        levels_const = relax.const(levels.reshape((1,) * len(shape) + (len(levels),)))
        table_value = relax.Call(value.op, [self._table(value.args[0], chain, levels_const, {}), *value.args[1:]],
                                 value.attrs)
        table = self.builder_.emit(table_value)
        table_shape = (*chain.table, len(levels))
        source, layout = _layout_source(chain.q, self.defs)
        key = (tuple(int(d) for d in source.ty.shape.values), layout, table_shape, q_type, quant.dtype)
        if key not in self.kernels:
            self.kernels[key] = self.builder_.add_func(lookup_kernel(*key), KERNEL_NAME)
        lookup = relax.call_tir(self.kernels[key], [self.visit_expr(source), table], binding.var.ty)
        emit = self.builder_.emit if isinstance(binding.var, relax.DataflowVar) else self.builder_.emit_output
        self.set_var_remap(binding.var, emit(lookup, binding.var.name))
        self.count += 1

    def _table(self, expr: relax.Expr, chain: _Chain, levels: relax.Expr, done: dict) -> relax.Expr:
        """`expr` evaluated on the table: the int8 value replaced by all its levels (a new last axis), each
        parameter given that axis too."""
        if expr in done:
            return done[expr]
        value = bound_value(expr, chain.defs)
        if isinstance(expr, tvm.ir.expr.Constant):
            out = relax.const(expr.value.numpy()[..., None]) if expr.value.numpy().ndim else expr
        elif expr in chain.parameters:
            out = self.builder_.emit(relax.op.expand_dims(self.visit_expr(expr), axis=[-1]))
        elif op_name(value) == "relax.dequantize":  # of the int8 value: all its levels
            out = self.builder_.emit(relax.Call(value.op, [levels, *value.args[1:]], value.attrs))
        else:  # an element-wise op of the chain
            args = [self._table(a, chain, levels, done) for a in value.args]
            out = self.builder_.emit(relax.Call(value.op, args, value.attrs))
        done[expr] = out
        return out


def lookup_tables(mod: tvm.IRModule, per_tensor_only: bool = False) -> tuple[tvm.IRModule, int]:
    """Rewrite each element-wise chain from one int8 value to a quantize as a table and a lookup (see the
    module docstring; `per_tensor_only`: only chains with one table for the whole tensor); returns the module
    and how many chains were rewritten."""
    main = mod["main"]
    mutator = _LookupTables(mod, definitions(main), per_tensor_only)
    new_main = mutator.visit_expr(main)
    if not mutator.count:
        return mod, 0
    out = mutator.builder_.get()
    out[out.get_global_var("main")] = new_main
    out = relax.transform.DeadCodeElimination()(relax.transform.Normalize()(out))
    return out, mutator.count
