"""What a compile is asked to do: one frozen config shared by the lowering, the bundle writer and the tuner.
No TVM here: `python -m compile --list-targets` and argument errors answer without loading it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ucm.paths import DIST, INT8_ONNX

DEFAULT_ONNX = INT8_ONNX
TUNING_DIR = Path(__file__).resolve().parent / "tuning"  # MetaSchedule records, one folder per target


@dataclass(frozen=True)
class CompileConfig:
    target: str = "cortex-a72"
    onnx: Path = DEFAULT_ONNX
    out: Path | None = None  # default: dist/<target>
    kernels: str | None = None  # "llvm" (object code) or "c" (C source); default: the target's
    build: bool = True
    tuning: bool = True  # apply the MetaSchedule records shipped for the target
    tuning_dir: Path = TUNING_DIR  # <dir>/<target>/database_{workload,tuning_record}.json
    inplace: bool = True  # let verified element-wise kernels overwrite an input that dies (less RAM)
    recompute_stem: bool = True  # compile.passes.recompute_groupnorm: less RAM, the stem conv computed twice
    matmul_nchw: bool = True  # compile.passes.matmul_nchw: token matmul + transpose as one kernel (less RAM)
    pointwise_conv: bool = True  # compile.passes.pointwise_conv: 1x1 convs tensorized as channel matmuls
    depthwise_float: bool = True  # compile.passes.depthwise_float: exact float32 depthwise convs (where faster)
    allow_float: bool = False  # quantized models: build even if some conv / matmul cannot run in integers
    ram_budget: int | None = None  # bare-metal targets: SRAM bytes the firmware links into (default: the board's)

    def out_dir(self) -> Path:
        return self.out if self.out is not None else DIST / self.target
