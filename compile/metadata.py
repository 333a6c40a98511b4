"""A bundle's `metadata.json`: what was built, from what, for which target, and what it costs (MACs, flash,
RAM, per-kernel workspace), and the size report `python -m compile` prints from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tvm

from compile.config import CompileConfig
from compile.executor.graph import ExecGraph
from compile.executor.plan_memory import MemoryPlan
from compile.frontend import count_params
from compile.pipeline import LoweredModel
from compile.toolchains import CompileTarget
from ucm.files import sha256_file


@dataclass(frozen=True)
class ExecutorPlan:
    """The static executor's plan: kernel calls, memory, in-place calls and workspace."""

    graph: ExecGraph
    memory: MemoryPlan
    inplace: dict[int, int]  # call index -> input position overwritten
    workspace: dict[str, int]  # kernel -> scratch bytes
    workspace_pool: int  # the static pool's size, with alignment slack
    recomputed_macs: dict[str, int]


def bundle_metadata(cfg: CompileConfig, target: CompileTarget, kernels: str, tvm_target: dict,
                    lowered: LoweredModel, plan: ExecutorPlan, tuned: int, weight_bytes: int,
                    fingerprint: str) -> dict:
    graph, macs = plan.graph, lowered.kernel_macs
    height, width = graph.image_size()
    # the caller's image buffer counts unless the image is read in the arena (uint8 models: ucm_input())
    image_in_arena = graph.image_in_arena
    io_bytes = height * width * (1 if image_in_arena else 4)
    arena = plan.memory.arena_bytes
    return {
        "target": target.name,
        "board": target.board,
        "triple": target.triple,
        "tvm_target": tvm_target,
        "kernel_codegen": kernels,
        "tuned_kernels": tuned,
        "inplace_calls": len(plan.inplace),
        "tvm_version": tvm.__version__,
        "onnx": str(cfg.onnx),
        "onnx_sha256": sha256_file(Path(cfg.onnx)),
        "compiler_sha256": fingerprint,
        "quantized": lowered.quantized,
        "input": {"height": height, "width": width, "layout": "HWC", "dtype": "uint8", "in_arena": image_in_arena},
        "output": {"height": height, "width": width, "dtype": "uint8", "values": "0 skin, 255 lesion"},
        "params": count_params(lowered.onnx_model),
        "macs": int(sum(macs.get(c.kernel, 0) - plan.recomputed_macs.get(c.kernel, 0) for c in graph.calls)),
        "macs_executed": int(sum(macs.get(c.kernel, 0) for c in graph.calls)),
        "ops": lowered.ops,
        "float_conv_matmul": lowered.mac_ops.float,
        "float_conv_matmul_report": lowered.float_report,
        "flash_bytes": {"code": None, "weights": weight_bytes},
        "ram_bytes": {"arena": arena, "workspace": plan.workspace_pool, "io": io_bytes,
                      "total": arena + plan.workspace_pool + io_bytes},
        "kernels": [
            {"name": c.kernel, "macs": int(macs.get(c.kernel, 0)),
             "output_shape": list(graph.tensors[c.output].shape), "bytes": graph.tensors[c.output].nbytes,
             "workspace_bytes": plan.workspace.get(c.kernel, 0)}
            for c in graph.calls
        ],
    }


def size_report(metadata: dict) -> str:
    flash, ram = metadata["flash_bytes"], metadata["ram_bytes"]
    code = f"{flash['code']:,}" if flash["code"] is not None else "not built"
    lines = [
        f"target {metadata['target']} ({metadata['board']}), kernels: TVM {metadata['kernel_codegen']}",
        (f"params {metadata['params']:,}  MACs {metadata['macs']:,}  ops int8 {metadata['ops']['int8']} / "
         f"float {metadata['ops']['float']}  float conv/matmul {metadata['float_conv_matmul']}"),
        f"flash: code {code} B, weights {flash['weights']:,} B",
        (f"RAM:   arena {ram['arena']:,} B, workspace {ram['workspace']:,} B, io {ram['io']:,} B, "
         f"total {ram['total']:,} B ({ram['total'] / 2**20:.2f} MiB)"),
    ]
    if "memory" in metadata:
        peak = metadata["memory"]["peak"]
        lines.append(f"arena peak: {peak['live_bytes']:,} B alive at kernel call {peak['call']} "
                     f"({metadata['memory']['calls'][peak['call']]['kernel']}); plot: memory.png")
        written = metadata["memory"]["written"]
        lines.append("kernel outputs: " + ", ".join(f"{row['tensors']} {dtype} ({row['bytes']:,} B)"
                                                    for dtype, row in sorted(written.items(), key=lambda kv: -kv[1]["bytes"])))
    for row in metadata.get("float_conv_matmul_report", []):
        lines.append(f"float (--allow-float): {row['node']} ({row['op']}): {row['reason']}")
    if "firmware" in metadata:
        fw = metadata["firmware"]
        lines.append(f"firmware ELF: flash {fw['flash']:,} B; RAM {fw['ram']:,} B of the {fw['ram_budget']:,} B budget "
                     f"(data {fw['ram_data']:,}, bss {fw['ram_bss']:,}, heap {fw['ram_heap']:,}, stack "
                     f"{fw['ram_stack']:,}); runner staging outside it {fw['staging']:,} B")
    return "\n".join(lines)
