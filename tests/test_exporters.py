"""The compiler on int8 ONNX files we did not write: ONNX Runtime's `quantize_static` (QDQ, uint8 asymmetric
and int8 symmetric activations, per-channel and per-tensor weights), PyTorch's PT2E flow exported by
torch.onnx, and the coverage report with --strict / --allow-float when something cannot run in integers."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

from bench.check import check_bundle
from compile.__main__ import main as compile_main
from compile.bundle import compile_bundle
from compile.config import CompileConfig
from compile.pipeline import lower_to_kernels
from quantize.ort_static import quantize_with_ort
from quantize.pt2e import quantize_with_pt2e
from ucm.paths import FLOAT_CHECKPOINT, FLOAT_ONNX, INT8_ONNX, SAMPLE_DATA

PRODUCERS = {
    "ONNX Runtime, uint8 asymmetric, per-channel weights": lambda out: quantize_with_ort(FLOAT_ONNX, out, "uint8", True),
    "ONNX Runtime, int8 symmetric, per-tensor weights": lambda out: quantize_with_ort(FLOAT_ONNX, out, "int8", False),
    "PyTorch PT2E (torchao X86InductorQuantizer), torch.onnx": lambda out: quantize_with_pt2e(FLOAT_CHECKPOINT, out),
}


@pytest.mark.parametrize("producer", sorted(PRODUCERS))
def test_int8_onnx_of_other_tools_runs_in_integers_and_agrees(producer: str, tmp_path: Path) -> None:
    onnx_path = PRODUCERS[producer](tmp_path / "model.onnx")  # calibrated on 8 sample images
    bundle = compile_bundle(CompileConfig(target="x86_64", onnx=onnx_path, out=tmp_path / "bundle"))
    assert bundle.metadata["float_conv_matmul"] == 0 and bundle.metadata["float_conv_matmul_report"] == []
    result = check_bundle(bundle.dir, onnx_path, SAMPLE_DATA)  # 32 images, 256x256, vs ONNX Runtime
    assert result.n_images == 32 and result.pixel_agreement >= 0.995


def test_strict_names_each_float_node_and_allow_float_builds(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = onnx.load(str(INT8_ONNX))
    producers = {out: node for node in model.graph.node for out in node.output}
    conv = next(node for node in model.graph.node if node.op_type == "Conv")
    weight_dq = producers[conv.input[1]]
    zero_point = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == weight_dq.input[2]))
    model.graph.initializer.append(numpy_helper.from_array(zero_point + 1, name="asymmetric_zero_point"))
    weight_dq.input[2] = "asymmetric_zero_point"
    path = tmp_path / "asymmetric.onnx"
    onnx.save(model, str(path))

    assert compile_main(["--target", "x86_64", "--onnx", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{conv.name} (conv2d): the weight zero point is not 0" in err and "--allow-float" in err
    assert not (tmp_path / "out").exists()
    lowered = lower_to_kernels(CompileConfig(target="x86_64", onnx=path, allow_float=True))
    assert [r["node"] for r in lowered.float_report] == [conv.name] and lowered.mac_ops.float == 1
