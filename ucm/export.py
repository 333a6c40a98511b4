"""Export the float UCM-Net to ONNX (TorchScript exporter, opset 17, input [1, 3, S, S] float in [0, 1])."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from ucm.files import atomic_write_bytes

OPSET = 17


def export_float_onnx(model: torch.nn.Module, path: str | Path, size: int = 256) -> Path:
    """Write `model` (eval mode, final logits only) as ONNX with a fixed input shape; returns the path."""
    model = model.eval()
    buf = io.BytesIO()
    with torch.no_grad(), quiet_export_warnings():
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, size, size),),
            buf,
            input_names=["image"],
            output_names=["logits"],
            opset_version=OPSET,
            dynamo=False,
        )
    atomic_write_bytes(path, make_shapes_static(buf.getvalue()))
    return Path(path)


@contextlib.contextmanager
def quiet_export_warnings() -> Iterator[None]:
    """Silence the exporter's warnings that do not apply to UCM-Net: the tracer's note on the model's input-size
    check (the shape is fixed) and the instance-norm training-mode note (without running statistics it
    computes the same in both modes)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="ONNX export mode is set to TrainingMode.EVAL")
        yield


def make_shapes_static(onnx_bytes: bytes) -> bytes:
    """Replace the shape arithmetic the tracer records (Shape -> Gather -> Concat -> Reshape) by constants.

    The input shape is fixed, so ONNX shape inference knows every Reshape's output shape: each Reshape gets
    it as a constant and the shape sub-graphs, now dead, are dropped. Initializers listed as graph inputs
    are removed from the inputs. Nothing else in the graph changes (Q/DQ pairs stay exactly as exported).
    """
    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    del graph.input[:]
    graph.input.extend(inputs)
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    shapes = {}
    for vi in list(inferred.value_info) + list(inferred.output) + list(inferred.input):
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = [d.dim_value for d in dims]
    for node in graph.node:
        if node.op_type == "Reshape" and node.output[0] in shapes and node.input[1] not in inits:
            name = f"{node.output[0]}__static_shape"
            graph.initializer.append(numpy_helper.from_array(np.array(shapes[node.output[0]], np.int64), name))
            node.input[1] = name
    prune_graph(graph)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def prune_graph(graph: onnx.GraphProto, dropped: set[int] = frozenset()) -> None:
    """Remove the nodes in `dropped` (by id), every node no graph output depends on, and unused initializers."""
    producer = {o: n for n in graph.node if id(n) not in dropped for o in n.output}
    live, stack = set(), [o.name for o in graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is not None and id(node) not in live:
            live.add(id(node))
            stack.extend(node.input)
    kept = [n for n in graph.node if id(n) in live]
    del graph.node[:]
    graph.node.extend(kept)
    used = {i for n in kept for i in n.input}
    kept_inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
