"""The compiler on int8 ONNX files we did not write: ONNX Runtime's `quantize_static` (QDQ, uint8 asymmetric
and int8 symmetric activations, per-channel and per-tensor weights), and the coverage report with --strict /
--allow-float when something cannot run in integers."""

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
from ucm.paths import FLOAT_ONNX, INT8_ONNX, SAMPLE_DATA

VARIANTS = {"uint8 asymmetric, per-channel weights": ("uint8", True),
            "int8 symmetric, per-tensor weights": ("int8", False)}


@pytest.fixture(scope="module")
def ort_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ort")
    return {name: quantize_with_ort(FLOAT_ONNX, root / f"{i}.onnx", activations, per_channel, n=8)
            for i, (name, (activations, per_channel)) in enumerate(VARIANTS.items())}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_onnx_runtime_quantized_models_run_in_integers_and_agree(ort_models: dict[str, Path], variant: str,
                                                                  tmp_path: Path) -> None:
    bundle = compile_bundle(CompileConfig(target="x86_64", onnx=ort_models[variant], out=tmp_path / "bundle"))
    assert bundle.metadata["float_conv_matmul"] == 0 and bundle.metadata["float_conv_matmul_report"] == []
    result = check_bundle(bundle.dir, ort_models[variant], SAMPLE_DATA)  # 32 images, 256x256, vs ONNX Runtime
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
