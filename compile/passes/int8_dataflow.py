"""Keep activations int8 between operators: dequantize where a value is read, not where it is produced.

A QCDQ graph stores `y = DequantizeLinear(q)` once and lets every reader use the float `y`; after fusion that
float tensor is what the kernel producing `q` writes to memory. This pass rewrites `main` so that:

- a `reshape` / `permute_dims` of a per-tensor dequantized value moves onto the int8 value
  (`permute_dims(dequantize(q)) -> dequantize(permute_dims(q))`: the layout copy moves int8, not float);
- a `quantize` of a dequantized value with the same scale, zero point and type is the int8 value itself
  (Brevitas writes `Q -> DQ -> Q -> DQ` where a tensor's quantizer is shared with the layer that reads it);
- every other reader gets its own `dequantize` call right before it, so that fusion puts the dequantize in the
  reader's kernel (its prologue) and the producer's kernel ends with the `quantize` (its epilogue);
- a cheap element-wise op (add, subtract, multiply, ReLU) of dequantized values is, like them, computed again
  in each reader (the doubled residual `x + x` is read by a norm's mean, variance and centring).

The DPL rewrites merge identical calls again, so the pipeline runs this pass once more just before fusion.

`compile.kernels.fusion` marks the dequantize kernels so that FuseOps does not pull them back into the
producer. Values are unchanged: dequantize is applied to the same int8 data, only later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from compile.passes.common import op_name, qparams, quantizer

LAYOUT_OPS = ("relax.reshape", "relax.permute_dims")
RECOMPUTED_OPS = ("relax.add", "relax.subtract", "relax.multiply", "relax.nn.relu")


@dataclass(frozen=True)
class _Dequantized:
    """A float value that is `dequantize(data, scale, zero_point)`, not yet emitted."""

    data: relax.Expr  # the int8 / uint8 value
    call: relax.Call  # the dequantize call (its scale, zero point and attributes)

    def per_tensor(self) -> bool:
        return qparams(self.call, "relax.dequantize") is not None

    def emit(self, builder: relax.BlockBuilder) -> relax.Var:
        return builder.emit(relax.Call(self.call.op, [self.data, *self.call.args[1:]], self.call.attrs))


@dataclass(frozen=True)
class _Recomputed:
    """A cheap element-wise op of dequantized values (or constants), emitted again at each reader."""

    call: relax.Call  # its arguments: pending values, constants or computed variables

    def emit(self, builder: relax.BlockBuilder, read) -> relax.Var:
        return builder.emit(relax.Call(self.call.op, [read(a) for a in self.call.args], self.call.attrs))


def _same_quantizer(quantize: relax.Call, dq: _Dequantized) -> bool:
    """Does `quantize` give back exactly the int8 data `dq` dequantizes (same scale, zero point and type)?"""
    ours, theirs = qparams(dq.call, "relax.dequantize"), quantizer(quantize)
    return (ours is not None and theirs is not None and np.float32(ours.scale) == np.float32(theirs.scale)
            and (ours.zero_point, ours.dtype) == (theirs.zero_point, theirs.dtype))


@relax.expr_functor.mutator
class _DequantizeAtReaders(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        self.pending: dict[relax.Var, _Dequantized | _Recomputed] = {}
        self.moved = 0

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        value, var = binding.value, binding.var
        op = op_name(value)
        last = not isinstance(var, relax.DataflowVar)  # the block's output: must be computed here
        if op == "relax.dequantize" and not last:
            self.pending[var] = _Dequantized(self.visit_expr(value.args[0]), value)
            return
        if op in RECOMPUTED_OPS and not last and any(a in self.pending for a in value.args) and all(
                a in self.pending or isinstance(a, tvm.ir.expr.Constant) for a in value.args):
            self.pending[var] = _Recomputed(value)
            return
        source = self.pending.get(value.args[0]) if op is not None and value.args else None
        if isinstance(source, _Dequantized) and not last:
            if op in LAYOUT_OPS and source.per_tensor():
                moved = relax.Call(value.op, [source.data, *value.args[1:]], value.attrs, value.ty_args)
                self.pending[var] = _Dequantized(self.builder_.emit(moved, var.name), source.call)
                self.moved += 1
                return
            if op == "relax.quantize" and _same_quantizer(value, source):
                self.set_var_remap(var, source.data)
                return
        if isinstance(value, relax.Call):
            args = [self._read(a) for a in value.args]
            value = relax.Call(value.op, args, value.attrs, value.ty_args)
        emit = self.builder_.emit_output if last else self.builder_.emit
        self.set_var_remap(var, emit(self.visit_expr(value), var.name))

    def _read(self, arg: relax.Expr) -> relax.Expr:
        if isinstance(arg, relax.Tuple):
            return relax.Tuple([self._read(f) for f in arg.fields])
        pending = self.pending.get(arg) if isinstance(arg, relax.Var) else None
        if isinstance(pending, _Dequantized):
            return pending.emit(self.builder_)
        if isinstance(pending, _Recomputed):
            return pending.emit(self.builder_, self._read)
        return arg


def int8_dataflow(mod: tvm.IRModule) -> tuple[tvm.IRModule, int]:
    """Dequantize at each reader (see the module docstring); returns the module and how many layout ops now
    move int8 instead of float."""
    mutator = _DequantizeAtReaders(mod)
    main = mutator.visit_expr(mod["main"])
    out = tvm.IRModule(dict(mod.functions))
    out[out.get_global_var("main")] = main
    out = relax.transform.DeadCodeElimination()(relax.transform.Normalize()(out))
    return out, mutator.moved
