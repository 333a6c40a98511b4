import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import FLOAT_CKPT, REPO

from ucm.checkpoint import FLOAT_FORMAT, CheckpointError, load_float_model, save_checkpoint
from ucm.export import export_float_onnx


def _evaluate(*args):
    return subprocess.run([sys.executable, "-m", "ucm.evaluate", *args], cwd=REPO, capture_output=True, text=True)


def test_evaluate_json_and_overlays(tiny_isic, tmp_path):
    out = _evaluate("--checkpoint", str(FLOAT_CKPT), "--data", str(tiny_isic), "--json", str(tmp_path / "m.json"),
                    "--overlays", str(tmp_path / "ov"))
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics) == {"miou", "mdice", "miou_star", "mdice_star", "n_images"}
    assert metrics["n_images"] == 12
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("miou", "mdice", "miou_star", "mdice_star"))
    assert metrics["miou"] > 0.6  # the shipped model segments real lesions
    assert len(list((tmp_path / "ov").glob("*.png"))) == 12


def test_onnx_and_checkpoint_agree(tiny_isic, tmp_path):
    model, _ = load_float_model(FLOAT_CKPT)
    export_float_onnx(model, tmp_path / "f.onnx")
    a = _evaluate("--checkpoint", str(FLOAT_CKPT), "--data", str(tiny_isic), "--json", str(tmp_path / "a.json"))
    b = _evaluate("--checkpoint", str(tmp_path / "f.onnx"), "--data", str(tiny_isic), "--json", str(tmp_path / "b.json"))
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    ma, mb = json.loads((tmp_path / "a.json").read_text()), json.loads((tmp_path / "b.json").read_text())
    assert ma["miou"] == pytest.approx(mb["miou"], abs=1e-3)


def test_int8_onnx_in_reference_mode(tiny_isic, tmp_path):
    """--onnx-reference runs the int8 QDQ graph as ONNX defines it (no fused integer kernels, whose results
    depend on the CPU; the parity checks' reference, `bench.check.onnx_logits`) and reports like any other run."""
    from ucm.paths import INT8_ONNX

    out = _evaluate("--checkpoint", str(INT8_ONNX), "--data", str(tiny_isic), "--onnx-reference",
                    "--json", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "r.json").read_text())["miou"] > 0.6
    wrong = _evaluate("--checkpoint", str(FLOAT_CKPT), "--data", str(tiny_isic), "--onnx-reference")
    assert wrong.returncode == 2 and "--onnx-reference applies to .onnx files" in wrong.stderr


def test_split_and_bad_data_errors(tmp_path):
    out = _evaluate("--data", str(tmp_path / "missing"))
    assert out.returncode == 2 and "no such data folder" in out.stderr


def test_corrupt_and_foreign_checkpoints(tmp_path, tiny_isic):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(FLOAT_CKPT.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_float_model(bad)
    other = torch.nn.Conv2d(3, 8, 3)
    save_checkpoint({"format": FLOAT_FORMAT, "model": other.state_dict(), "model_config": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="weights do not fit a float UCM-Net"):
        load_float_model(tmp_path / "other.pt")
    torch.save({"weights": 1}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a ucm-edge checkpoint"):
        load_float_model(tmp_path / "plain.pt")
    out = _evaluate("--checkpoint", str(bad), "--data", str(tiny_isic))
    assert out.returncode == 2 and "bad.pt" in out.stderr


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this would run",))


def test_empty_and_unsafe_checkpoints(tmp_path, tiny_isic):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt: the file is empty"):
        load_float_model(empty)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": FLOAT_FORMAT, "model": _RunsCode()}, unsafe)
    with pytest.raises(CheckpointError, match=r"unsafe\.pt: refused: .*system.*arbitrary code execution.*trusted"):
        load_float_model(unsafe)
    out = _evaluate("--checkpoint", str(empty), "--data", str(tiny_isic))
    assert out.returncode == 2 and "empty.pt" in out.stderr and "Traceback" not in out.stderr
    out = _evaluate("--data", str(tiny_isic), "--size", "100")
    assert out.returncode == 2 and "--size 100: sides must be multiples of 64" in out.stderr
