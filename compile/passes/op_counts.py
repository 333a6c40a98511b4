"""Counting Relax operator calls by the arithmetic they do: how many convolutions / matrix products run in
integers after `lower_int8`, and how many ops in all read integer or float tensors."""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import relax

MAC_OPS = ("relax.nn.conv2d", "relax.matmul")


@dataclass(frozen=True)
class MacCount:
    int8: int
    float: int


def mac_calls(mod: tvm.IRModule) -> list[relax.Call]:
    """The conv2d / matmul calls of the module, in program order."""
    return [c for c in _op_calls(mod) if c.op.name in MAC_OPS]


def _op_calls(mod: tvm.IRModule) -> list[relax.Call]:
    """Every operator call (not calls of functions) in the module's Relax functions."""
    calls: list[relax.Call] = []

    @relax.expr_functor.visitor
    class Visitor(relax.PyExprVisitor):
        def visit_call_(self, call: relax.Call) -> None:
            if isinstance(call.op, tvm.ir.Op):
                calls.append(call)
            super().visit_call_(call)

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            Visitor().visit_expr(func)
    return calls


def is_integer(expr: relax.Expr) -> bool:
    """Whether a tensor expression holds integers (int8, uint8, int32, ...)."""
    return str(expr.ty.dtype).startswith(("int", "uint"))


def count_mac_ops(mod: tvm.IRModule) -> MacCount:
    """How many conv2d / matmul calls take integer operands and how many are still float."""
    macs = mac_calls(mod)
    n_int = sum(is_integer(c.args[0]) for c in macs)
    return MacCount(int8=n_int, float=len(macs) - n_int)


def count_ops(mod: tvm.IRModule) -> dict[str, int]:
    """Relax operator calls by the arithmetic they do: "int8" when their first operand is an integer
    tensor (int8 x int8 -> int32 products, int32 bias adds, casts out of int32), else "float"."""
    calls = [c for c in _op_calls(mod) if c.args and isinstance(c.args[0].ty, relax.TensorType)]
    n_int = sum(is_integer(c.args[0]) for c in calls)
    return {"int8": n_int, "float": len(calls) - n_int}
