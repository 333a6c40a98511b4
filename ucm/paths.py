"""Where the repository keeps what the commands use by default: shipped checkpoints and sample data, bundles
(`dist/`) and run outputs (`runs/`). One place, so every stage agrees."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = REPO / "checkpoints"
FLOAT_CHECKPOINT = CHECKPOINTS / "ucm_float.pt"
FLOAT_ONNX = CHECKPOINTS / "ucm_float.onnx"
INT8_ONNX = CHECKPOINTS / "ucm_int8.onnx"
SAMPLE_DATA = REPO / "data" / "sample"
DIST = REPO / "dist"
RUNS = REPO / "runs"
