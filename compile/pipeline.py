"""ONNX to fused TIR kernels: the one lowering that `python -m compile` and `python -m compile.tune` share.

    import (compile.frontend) -> integer lowering (compile.passes.lower_int8, quantized models)
    -> the Relax rewrites of RELAX_REWRITES, in order -> legalize + fuse (compile.kernels.fusion)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import onnx
import tvm
from tvm import relax

from compile.config import CompileConfig
from compile.errors import CompileError
from compile.frontend import import_onnx, is_quantized, mac_node_names
from compile.kernels.fusion import fuse
from compile.passes.depthwise_float import depthwise_float
from compile.passes.int8_dataflow import int8_dataflow
from compile.passes.integer_norm_stats import integer_norm_stats
from compile.passes.lookup_tables import lookup_tables
from compile.passes.lower_int8 import float_macs, lower_int8
from compile.passes.mask_output import mask_output
from compile.passes.matmul_nchw import matmul_nchw
from compile.passes.norm_deviation import norm_deviation
from compile.passes.op_counts import MacCount, count_mac_ops, count_ops, mac_calls
from compile.passes.pointwise_conv import pointwise_conv
from compile.passes.qparams_as_tensors import qparams_as_tensors
from compile.passes.recompute_groupnorm import recompute_groupnorm
from compile.passes.uint8_input import uint8_input
from compile.toolchains import CompileTarget, get_target


class IntegerLoweringError(CompileError, RuntimeError):
    """A quantized model still has float convolutions / matrix products after integer lowering (and
    --allow-float was not given); the message names each node and why."""


@dataclass(frozen=True)
class RelaxRewrite:
    option: str  # the CompileConfig flag that turns it on
    apply: Callable[[tvm.IRModule, CompileTarget], tuple[tvm.IRModule, int]]  # -> (module, places rewritten)
    done: str  # what it did, with {n}


RELAX_REWRITES = (
    RelaxRewrite("recompute_stem", lambda mod, target: recompute_groupnorm(mod, target.vector_register_bytes,
                                                                             target.dot_product, target.float_stem),
                 "{n} conv -> GroupNorm -> max-pool chain(s) recompute the conv instead of storing it"),
    RelaxRewrite("matmul_nchw", lambda mod, target: matmul_nchw(mod, target.dot_product, target.strided_reads),
                 "{n} token matmuls write channel-first directly (no transposed copy)"),
    RelaxRewrite("pointwise_conv", lambda mod, target: pointwise_conv(mod, target.dot_product,
                                                                      target.strided_reads),
                 "{n} 1x1 convolutions as matrix products over channels, tensorized"),
    RelaxRewrite("depthwise_float", lambda mod, target: depthwise_float(mod) if target.float_depthwise else (mod, 0),
                 "{n} depthwise convolutions accumulate in float32 (exact: each sum below 2^24)"),
)


@dataclass(frozen=True)
class LoweredModel:
    onnx_model: onnx.ModelProto
    quantized: bool
    mac_ops: MacCount  # conv / matmul calls, integer and float, after integer lowering
    float_report: list[dict]  # quantized models: each conv / matmul left in float, its ONNX node and why
    ops: dict[str, int]  # Relax operator calls by arithmetic ("int8" / "float")
    fused: tvm.IRModule  # Relax main (returning the uint8 mask) calling the fused TIR kernels
    kernel_macs: dict[str, int]  # multiply-accumulates per fused kernel
    logits_kernel: str  # in `fused`, not called by its main (which returns the mask): ucm_run_logits' last kernel


def lower_to_kernels(cfg: CompileConfig, log: Callable[[str], None] = lambda _: None) -> LoweredModel:
    log(f"import {cfg.onnx}")
    mod, onnx_model = import_onnx(Path(cfg.onnx))
    quantized = is_quantized(onnx_model)
    float_report: list[dict] = []
    if quantized:
        mod, pixels = uint8_input(mod)
        if pixels:
            log("input: the caller's uint8 pixels (the pixel quantize is the identity on them)")
        mod, moved = int8_dataflow(mod)
        log(f"int8 between operators: each reader dequantizes; {moved} layout ops move int8")
        mod = lower_int8(mod)
        float_report = coverage_report(mod, onnx_model)
    mac_ops, ops = count_mac_ops(mod), count_ops(mod)
    log(f"integer lowering: {mac_ops.int8} conv/matmul int8, {mac_ops.float} float; "
        f"ops {ops['int8']} int8, {ops['float']} float")
    if float_report:
        listing = "\n".join(f"  {r['node']} ({r['op']}): {r['reason']}" for r in float_report)
        if not cfg.allow_float:
            raise IntegerLoweringError(
                f"{cfg.onnx}: {len(float_report)} convolutions / matrix products would run in float:\n{listing}\n"
                "quantize them (DequantizeLinear of an int8 / uint8 input and of a symmetric int8 weight), or "
                "pass --allow-float to build with them in float")
        log(f"--allow-float: {len(float_report)} conv/matmul stay float:\n{listing}")
    target = get_target(cfg.target)
    if (cfg.kernels or target.kernels) != "llvm":  # TVM's C code generator cannot call LLVM intrinsics
        target = replace(target, dot_product=None)
    elif target.dot_product is not None:
        log(f"int8 matrix products tensorized with {target.dot_product.mnemonic} ({target.dot_product.lanes} "
            f"channels x {target.dot_product.depth} products per instruction)")
    for rewrite in RELAX_REWRITES:
        if getattr(cfg, rewrite.option):
            mod, count = rewrite.apply(mod, target)
            if count:
                log(rewrite.done.format(n=count))
    if quantized:
        # LayerNorm as mean / variance / element-wise ops, so that each part reads the int8 input itself
        mod = relax.transform.DecomposeOpsForTraining()(mod)
        mod, _ = int8_dataflow(mod)  # again: the DPL rewrites above merged the per-reader dequantize calls
        mod, count = integer_norm_stats(mod)
        log(f"{count} norms: mean and standard deviation from integer sums of the int8 input")
        mod, count = norm_deviation(mod)
        log(f"{count} norms of float values: standard deviation once per group, from the norm's mean")
        if target.lookup_tables != "none":
            mod, count = lookup_tables(mod, per_tensor_only=target.lookup_tables == "per_tensor")
            log(f"{count} element-wise chains from one int8 value (norms, GELU) as lookup tables")
        mod, _ = qparams_as_tensors(mod)  # one kernel for calls that differ only in their scales
    log("legalize and fuse (TVM Relax passes)")
    fused, kernel_macs = fuse(mask_output(mod))
    fused, logits_kernel = _add_logits_kernel(fused, kernel_macs, mod)
    return LoweredModel(onnx_model, quantized, mac_ops, float_report, ops, fused, kernel_macs, logits_kernel)


def _add_logits_kernel(fused: tvm.IRModule, kernel_macs: dict[str, int], mod: tvm.IRModule) -> tuple[tvm.IRModule, str]:
    """`fused` (whose main returns the mask) with the kernel that computes the logits instead, taken from the
    fusion of `mod` (main returning the logits): its last kernel, with the same inputs as the mask kernel."""
    logits_fused, logits_macs = fuse(mod)
    last = [b.value.args[0] for blk in logits_fused["main"].body.blocks for b in blk.bindings
            if isinstance(b.value, relax.Call) and b.value.op.name == "relax.call_tir"][-1]
    name = last.name_hint if last.name_hint not in [gv.name_hint for gv in fused.functions] else f"{last.name_hint}_logits"
    out = tvm.IRModule(dict(fused.functions))
    out[name] = logits_fused[last]
    kernel_macs[name] = logits_macs[last.name_hint]
    return out, name


def coverage_report(mod: tvm.IRModule, onnx_model: onnx.ModelProto) -> list[dict]:
    """Each conv / matmul that integer lowering left in float: its ONNX node (where the frontend imported one
    call per Conv / MatMul / Gemm node, as it does), the op and why."""
    names = mac_node_names(onnx_model)
    if len(names) != len(mac_calls(mod)):
        names = []
    return [{"node": names[f.index] if names else f"{f.op} #{f.index}", "op": f.op, "reason": f.reason}
            for f in float_macs(mod)]
