"""ONNX to fused TIR kernels: the one lowering that `python -m compile` and `python -m compile.tune` share.

    import (compile.frontend) -> integer lowering (compile.passes.lower_int8, quantized models)
    -> the Relax rewrites of RELAX_REWRITES, in order -> legalize + fuse (compile.kernels.fusion)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
import tvm

from compile.config import CompileConfig
from compile.errors import CompileError
from compile.frontend import import_onnx, is_quantized
from compile.kernels.fusion import fuse
from compile.passes.lower_int8 import lower_int8
from compile.passes.matmul_nchw import matmul_nchw
from compile.passes.op_counts import MacCount, count_mac_ops, count_ops
from compile.passes.recompute_groupnorm import recompute_groupnorm


class IntegerLoweringError(CompileError, RuntimeError):
    """A quantized model still has float convolutions / matrix products after integer lowering."""


@dataclass(frozen=True)
class RelaxRewrite:
    option: str  # the CompileConfig flag that turns it on
    apply: Callable[[tvm.IRModule], tuple[tvm.IRModule, int]]  # -> (module, how many places it rewrote)
    done: str  # what it did, with {n}


RELAX_REWRITES = (
    RelaxRewrite("recompute_stem", recompute_groupnorm,
                 "{n} conv -> GroupNorm -> max-pool chain(s) recompute the conv instead of storing it"),
    RelaxRewrite("matmul_nchw", matmul_nchw, "{n} token matmuls write channel-first directly (no transposed copy)"),
)


@dataclass(frozen=True)
class LoweredModel:
    onnx_model: onnx.ModelProto
    quantized: bool
    mac_ops: MacCount  # conv / matmul calls, integer and float, after integer lowering
    ops: dict[str, int]  # Relax operator calls by arithmetic ("int8" / "float")
    fused: tvm.IRModule  # Relax main calling the fused TIR kernels
    kernel_macs: dict[str, int]  # multiply-accumulates per fused kernel


def lower_to_kernels(cfg: CompileConfig, log: Callable[[str], None] = lambda _: None) -> LoweredModel:
    log(f"import {cfg.onnx}")
    mod, onnx_model = import_onnx(Path(cfg.onnx))
    quantized = is_quantized(onnx_model)
    if quantized:
        mod = lower_int8(mod)
    mac_ops, ops = count_mac_ops(mod), count_ops(mod)
    log(f"integer lowering: {mac_ops.int8} conv/matmul int8, {mac_ops.float} float; "
        f"ops {ops['int8']} int8, {ops['float']} float")
    if quantized and mac_ops.float:
        raise IntegerLoweringError(
            f"{cfg.onnx}: {mac_ops.float} convolutions / matrix products are still float after integer lowering; "
            "every Conv / MatMul of a quantized model must read DequantizeLinear of an int8 input and weight"
        )
    for rewrite in RELAX_REWRITES:
        if getattr(cfg, rewrite.option):
            mod, count = rewrite.apply(mod)
            if count:
                log(rewrite.done.format(n=count))
    log("legalize and fuse (TVM Relax passes)")
    fused, kernel_macs = fuse(mod)
    return LoweredModel(onnx_model, quantized, mac_ops, ops, fused, kernel_macs)
