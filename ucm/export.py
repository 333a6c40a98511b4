"""Export the float UCM-Net to ONNX (TorchScript exporter, opset 17, input [1, 3, S, S] float in [0, 1])."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from ucm.checkpoint import atomic_write_bytes

OPSET = 17


def export_float_onnx(model: torch.nn.Module, path: str | Path, size: int = 256) -> Path:
    """Write `model` (eval mode, final logits only) as ONNX with a fixed input shape; returns the path."""
    model = model.eval()
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, size, size),),
            buf,
            input_names=["image"],
            output_names=["logits"],
            opset_version=OPSET,
            dynamo=False,
        )
    atomic_write_bytes(path, fold_constants(buf.getvalue()))
    return Path(path)


def fold_constants(onnx_bytes: bytes) -> bytes:
    """Fold the shape arithmetic the tracer records (Shape/Gather/Concat feeding Reshape) into constants.

    Uses ONNX Runtime's basic graph optimisations, which keep standard ONNX ops only, so that the graph
    other tools import (TVM, ONNX Runtime) has static shapes and no shape sub-graphs.
    """
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "folded.onnx"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = str(out)
        ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
        return out.read_bytes()
