"""Relax ops to fused TIR kernels: TVM's legalize and fusion passes, and the multiply-accumulates each fused
kernel does (counted from the convolutions and matrix products it holds, before FuseTIR merges them)."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from compile.kernels.attrs import KERNEL_PREFIX, MACS_ATTR, OpPattern
from compile.kernels.merge_prologue import merge_prologue
from compile.kernels.reciprocal import legalize_divide, legalize_quantize
from compile.kernels.resize import legalize_resize2d
from compile.passes.depthwise_float import legalize_conv2d


def fuse(mod: tvm.IRModule) -> tuple[tvm.IRModule, dict[str, int]]:
    """Legalize every Relax op to TIR and fuse them (TVM's CPU legalize passes); reshapes become views.

    Returns the fused module and the multiply-accumulates of each fused kernel, counted from the
    convolutions and matrix products each fused group holds (read before FuseTIR merges them)."""
    with tvm.target.Target({"kind": "c"}):
        grouped = tvm.transform.Sequential([
            relax.transform.FastMathTransform(),  # erf / exp / tanh as TOPI's vectorizable approximations
            relax.transform.LegalizeOps({"relax.image.resize2d": legalize_resize2d, "relax.nn.conv2d": legalize_conv2d,
                                         "relax.quantize": legalize_quantize, "relax.divide": legalize_divide}),
            relax.transform.AnnotateTIROpPattern(),
            _dequantize_fuses_forward,
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
        ])(mod)
        macs = _fused_macs(grouped)
        grouped, _ = merge_prologue(grouped)
        fused = tvm.transform.Sequential([
            relax.transform.FuseTIR(),
            relax.transform.RewriteDataflowReshape(),
            relax.transform.DeadCodeElimination(),
        ])(grouped)
    return fused, macs


PATTERNS = {"dequantize": OpPattern.BROADCAST, "mean": OpPattern.COMM_REDUCE, "variance": OpPattern.COMM_REDUCE}


@tvm.transform.module_pass(opt_level=0, name="DequantizeFusesForward")
def _dequantize_fuses_forward(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
    """Let each dequantize fuse into the kernel that reads it, never into the one that produced its input, so
    that the producer ends with its quantize and the value is stored as int8 in between.

    - dequantize: broadcast instead of element-wise (FuseOps grows a convolution's group only over
      element-wise successors, and fuses a broadcast op into its reader);
    - mean / variance: reductions (kCommReduce) instead of "output-fusable", which FuseOps refuses as a
      broadcast op's reader (`compile.passes.norm_deviation` gives its kernel the same mark itself).

    `compile.passes.int8_dataflow` gives every reader its own dequantize for this."""
    out = tvm.IRModule(dict(mod.functions))
    for gv, func in mod.functions.items():
        kind = next((k for prefix, k in PATTERNS.items() if gv.name_hint.startswith(prefix)), None)
        if isinstance(func, tvm.tirx.PrimFunc) and kind is not None:
            out[gv] = func.with_attr("op_pattern", int(kind))
    return out


def _shape(expr: relax.Expr) -> tuple[int, ...]:
    return tuple(int(d) for d in expr.ty.shape.values)


def _call_macs(call: relax.Call, result: relax.Var) -> int:
    """MACs of a legalized conv2d / matmul call_tir (0 for any other kernel)."""
    kernel = call.args[0].name_hint
    args = call.args[1].fields
    out = int(np.prod(_shape(result), dtype=np.int64))
    if "conv2d" in kernel:
        weight = _shape(args[1])
        return out * int(np.prod(weight[1:], dtype=np.int64))
    if kernel.startswith("matmul"):
        return out * _shape(args[0])[-1]
    return 0


def _call_tir_bindings(func: relax.Function):
    """(call, bound var) of every `call_tir` binding in a Relax function."""
    for block in func.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name == "relax.call_tir":
                yield value, binding.var


def _fused_macs(grouped: tvm.IRModule) -> dict[str, int]:
    macs: dict[str, int] = {}
    for gv, func in grouped.functions.items():
        if isinstance(func, relax.Function) and gv.name_hint != "main":
            macs[gv.name_hint] = sum(_call_macs(call, var) for call, var in _call_tir_bindings(func))
    for call, var in _call_tir_bindings(grouped["main"]):  # kernels left unfused are called from main directly
        callee = grouped[call.args[0]]
        known = callee.attrs.get(MACS_ATTR) if callee.attrs is not None else None
        macs.setdefault(call.args[0].name_hint, int(known) if known is not None else _call_macs(call, var))
    return macs


def kernel_module(mod: tvm.IRModule, exported: bool = True) -> tvm.IRModule:
    """The fused module's PrimFuncs; `exported`: each under the global symbol `ucm_<name>`."""
    funcs = {}
    for gv, func in mod.functions.items():
        if isinstance(func, tvm.tirx.PrimFunc):
            funcs[gv.name_hint] = func.with_attr("global_symbol", KERNEL_PREFIX + gv.name_hint) if exported else func
    return tvm.IRModule(funcs)
