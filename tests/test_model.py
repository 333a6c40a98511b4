import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import FLOAT_CKPT, REPO

from ucm.checkpoint import load_float_model
from ucm.data import load_tensors
from ucm.export import export_float_onnx
from ucm.model import build_model
from ucm.pairs import find_pairs
from ucm.summary import summarize


def test_parameter_count_matches_published_code():
    model = build_model()
    info = summarize(model)
    assert info["params"] == 46_188
    assert info["params_heads"] == 133
    assert info["params_published_equivalent"] == 47_436  # the published code's figure
    assert info["macs"] == 33_716_224  # 0.0337 G, heads excluded


def test_summary_cli_prints_json():
    out = subprocess.run([sys.executable, "-m", "ucm.summary", "--json"], cwd=REPO, capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert info["params"] == 46_188 and info["input"] == [1, 3, 256, 256]
    assert abs(info["macs"] / 1e9 - 0.0337) < 5e-5


def test_eval_returns_logits_train_returns_heads():
    model = build_model()
    x = torch.rand(2, 3, 128, 128)
    model.eval()
    out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1, 128, 128)
    model.train()
    logits, heads = model(x)
    assert logits.shape == (2, 1, 128, 128)
    assert len(heads) == 5 and all(h.shape == (2, 1, 128, 128) for h in heads)


def test_rejects_size_not_divisible_by_32():
    with pytest.raises(ValueError, match="multiples of 64"):
        build_model().eval()(torch.rand(1, 3, 160, 160))


def test_forward_matches_onnx_runtime(tmp_path, sample_dir):
    """Independent float reference: ONNX Runtime on the exported graph, real images, trained weights."""
    model, _ = load_float_model(FLOAT_CKPT)
    model.eval()
    path = export_float_onnx(model, tmp_path / "ucm.onnx", size=256)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    data = load_tensors(find_pairs(sample_dir)[:4], 256, progress=False)
    for i in range(len(data)):
        x = data.images[i : i + 1].float() / 255
        with torch.no_grad():
            ours = model(x).numpy()
        ref = session.run(None, {"image": x.numpy()})[0]
        np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def test_shipped_checkpoint_loads_safely():
    ckpt = torch.load(FLOAT_CKPT, weights_only=True)
    assert ckpt["model_config"]["channels"] == [8, 16, 24, 32, 48, 64]
    assert ckpt["metrics"]["miou"] > 0.8
