"""Quantization parameters as 1-element tensors, so that kernels which differ only in a scale are one kernel.

TVM legalizes `quantize` / `dequantize` with a scalar constant scale by writing the number into the kernel:
each of the network's ~150 activation scales makes its own copy of an otherwise identical kernel (with int8
between every pair of layers, the Cortex-M55 code grew from 197 to 349 KB). With the scale and zero point as
1-element constant tensors, the kernel reads them from its arguments (TVM's "singleton" quantization
parameters; the values are the same), FuseTIR shares one kernel among all calls of the same shape, and the
scales go to the weights (4 bytes each).
"""

from __future__ import annotations

import tvm
from tvm import relax

from compile.passes.common import op_name

QDQ_OPS = ("relax.quantize", "relax.dequantize")


def _as_tensor(expr: relax.Expr) -> relax.Expr:
    if isinstance(expr, tvm.ir.expr.Constant) and expr.value.numpy().ndim == 0:
        return relax.const(expr.value.numpy().reshape(1))
    return expr


@relax.expr_functor.mutator
class _QParamsAsTensors(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        self.changed = 0

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if op_name(call) not in QDQ_OPS:
            return call
        args = [call.args[0], *(_as_tensor(a) for a in call.args[1:])]
        if all(a.same_as(b) for a, b in zip(args, call.args)):
            return call
        self.changed += 1
        return relax.Call(call.op, args, call.attrs, call.ty_args)


def qparams_as_tensors(mod: tvm.IRModule) -> tuple[tvm.IRModule, int]:
    """Every scalar constant scale / zero point of a quantize or dequantize in `main` as a [1] tensor; returns
    the module and how many calls changed."""
    mutator = _QParamsAsTensors(mod)
    main = mutator.visit_expr(mod["main"])
    out = tvm.IRModule(dict(mod.functions))
    out[out.get_global_var("main")] = main
    return relax.transform.Normalize()(out), mutator.changed
