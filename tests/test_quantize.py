import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from brevitas.nn import QuantConv2d, QuantLinear
from conftest import FLOAT_CKPT, REPO
from onnx import numpy_helper
from torch import nn

from quantize.export import check_export, export_int8_onnx
from quantize.model import build_qat_model, float_layers, model_from_qat_checkpoint, quant_layers, weight_bytes
from ucm.checkpoint import FLOAT_FORMAT, CheckpointError, load_checkpoint, load_float_model, save_checkpoint
from ucm.data import load_tensors
from ucm.model import build_model
from ucm.pairs import find_pairs


def _run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True)


@pytest.fixture(scope="module")
def ptq_checkpoint(tmp_path_factory):
    """The shipped float model, calibrated (PTQ) on a few sample images."""
    out = tmp_path_factory.mktemp("ptq")
    res = _run("quantize.train", "--ptq", "--from", str(FLOAT_CKPT), "--data", str(REPO / "data" / "sample"),
               "--calib-images", "8", "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "PTQ on" in res.stdout
    return out / "best.pt"


def test_every_conv_and_linear_is_int8():
    model = build_qat_model(build_model().config.to_dict())
    assert float_layers(model) == []
    layers = quant_layers(model)
    convs = sum(isinstance(m, QuantConv2d) for _, m in layers)
    linears = sum(isinstance(m, QuantLinear) for _, m in layers)
    assert (convs, linears) == (38, 20)  # 33 deployed convs + 5 training-only heads; 20 linear layers
    x = torch.rand(1, 3, 128, 128)
    model.eval()
    with torch.no_grad():
        model(x)
    for name, layer in layers:
        assert layer.weight_quant.is_quant_enabled and int(layer.weight_quant.bit_width()) == 8, name
        assert layer.weight_quant.is_narrow_range and layer.weight_quant.is_signed, name
        assert layer.weight_quant.scale().flatten().numel() == layer.weight.shape[0], f"{name}: not per channel"
        assert layer.input_quant.is_quant_enabled and int(layer.input_quant.bit_width()) == 8, name
        assert layer.bias_quant.quant_injector.bit_width == 32 and layer.bias_quant.requires_input_scale, name
    stem_scale = float(model.stem.input_quant.scale())
    assert not model.stem.input_quant.is_signed and stem_scale == pytest.approx(1 / 255)


def test_a_float_layer_left_behind_is_detected():
    model = build_qat_model(None)
    model.final = nn.Conv2d(3, 1, 1)
    assert float_layers(model) == ["final"]


def test_qat_trains_and_resumes(tiny_isic, tmp_path):
    common = ["--from", str(FLOAT_CKPT), "--data", str(tiny_isic), "--size", "128", "--calib-images", "4",
              "--batch-size", "4", "--out", str(tmp_path / "qat"), "--no-progress"]
    res = _run("quantize.train", *common, "--epochs", "1")
    assert res.returncode == 0, res.stderr
    res = _run("quantize.train", *common, "--epochs", "2", "--resume")
    assert res.returncode == 0, res.stderr
    assert "resumed from" in res.stdout
    rows = [json.loads(l) for l in (tmp_path / "qat" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(np.isfinite(r["train_loss"]) for r in rows)
    ckpt = load_checkpoint(tmp_path / "qat" / "best.pt")
    model = model_from_qat_checkpoint(ckpt, tmp_path / "qat" / "best.pt")
    assert float_layers(model) == []


def test_export_agrees_and_graph_is_int8(ptq_checkpoint, tmp_path):
    model = model_from_qat_checkpoint(load_checkpoint(ptq_checkpoint), ptq_checkpoint)
    data = load_tensors(find_pairs(REPO / "data" / "sample")[:4], 128, progress=False)
    onnx_bytes = export_int8_onnx(model, 128, data.images[:1].float() / 255)
    check = check_export(onnx_bytes, model, data)
    assert check.pixel_agreement >= 0.995 and check.n_images == 4
    graph = onnx.load_from_string(onnx_bytes).graph
    producer = {o: n for n in graph.node for o in n.output}
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}

    def int8_source(name):
        """name is produced by DequantizeLinear reading int8 data: an int8 initializer or a QuantizeLinear."""
        dq = producer[name]
        assert dq.op_type == "DequantizeLinear", dq.op_type
        src = dq.input[0]
        while src in producer and producer[src].op_type == "Clip":
            src = producer[src].input[0]
        if src in inits:
            return inits[src].dtype
        q = producer[src]
        assert q.op_type == "QuantizeLinear"
        return inits[q.input[2]].dtype  # the zero point's type is the quantized type

    mac_nodes = [n for n in graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    assert len(mac_nodes) == 53
    for node in mac_nodes:
        assert int8_source(node.input[0]) in (np.int8, np.uint8), node.name
        assert int8_source(node.input[1]) == np.int8, node.name
    assert {inits[producer[n.input[2]].input[0]].dtype for n in mac_nodes if n.op_type == "Conv" and len(n.input) > 2} == {np.dtype(np.int32)}


def test_export_cli_and_evaluate_accept_int8(ptq_checkpoint, tmp_path, tiny_isic):
    # calibrated on 8 images only, so int8 rounding differences spread a little more than in the shipped model
    res = _run("quantize.export", "--checkpoint", str(ptq_checkpoint), "--out", str(tmp_path / "q.onnx"), "--min-agreement", "0.995")
    assert res.returncode == 0, res.stderr
    assert "mask pixels agreeing" in res.stdout and (tmp_path / "q.onnx").exists()
    metrics = {}
    for name, path in (("qat", ptq_checkpoint), ("onnx", tmp_path / "q.onnx")):
        res = _run("ucm.evaluate", "--checkpoint", str(path), "--data", str(tiny_isic), "--json", str(tmp_path / f"{name}.json"))
        assert res.returncode == 0, res.stderr
        metrics[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert set(metrics["qat"]) == {"miou", "mdice", "miou_star", "mdice_star", "n_images"}
    assert metrics["qat"]["miou"] == pytest.approx(metrics["onnx"]["miou"], abs=0.01)
    res = _run("ucm.evaluate", "--checkpoint", str(tmp_path / "q.onnx"), "--data", str(tiny_isic), "--size", "128")
    assert res.returncode == 2 and "pass --size 256" in res.stderr


def test_int8_weights_are_smaller(ptq_checkpoint):
    float_model, _ = load_float_model(FLOAT_CKPT)
    int8_model = model_from_qat_checkpoint(load_checkpoint(ptq_checkpoint), ptq_checkpoint)
    assert weight_bytes(float_model) == 4 * (46_188 - 133)
    assert weight_bytes(int8_model) < weight_bytes(float_model) / 2.5


def test_bad_float_checkpoints(tmp_path, tiny_isic):
    other = nn.Sequential(nn.Conv2d(3, 4, 3))
    save_checkpoint({"format": FLOAT_FORMAT, "model": other.state_dict(), "model_config": {}}, tmp_path / "other.pt")
    res = _run("quantize.train", "--from", str(tmp_path / "other.pt"), "--data", str(tiny_isic), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "weights do not fit a float UCM-Net" in res.stderr
    (tmp_path / "corrupt.pt").write_bytes(b"\x00" * 100)
    res = _run("quantize.train", "--from", str(tmp_path / "corrupt.pt"), "--data", str(tiny_isic), "--out", str(tmp_path / "c"))
    assert res.returncode == 2 and "corrupt.pt: not a readable PyTorch checkpoint" in res.stderr
    res = _run("quantize.export", "--checkpoint", str(FLOAT_CKPT), "--out", str(tmp_path / "x.onnx"))
    assert res.returncode == 2 and "is not an int8 QAT UCM-Net" in res.stderr
    with pytest.raises(CheckpointError):
        model_from_qat_checkpoint(load_checkpoint(FLOAT_CKPT), FLOAT_CKPT)


def test_export_fails_loudly_below_agreement(ptq_checkpoint, tmp_path):
    res = _run("quantize.export", "--checkpoint", str(ptq_checkpoint), "--out", str(tmp_path / "q.onnx"), "--min-agreement", "1.01")
    assert res.returncode == 1 and "nothing written" in res.stderr
    assert not (tmp_path / "q.onnx").exists()
