import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO

import ucm.train as train_module
from ucm.checkpoint import CheckpointError, load_float_model, save_checkpoint
from ucm.train import TrainConfig, TrainingError, train


def _cfg(data, out, **kw):
    base = dict(data=str(data), out=str(out), size=128, epochs=2, batch_size=4, workers=2, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def test_train_writes_checkpoints_and_log(tiny_isic, tmp_path):
    result = train(_cfg(tiny_isic, tmp_path / "run"))
    rows = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"train_loss", "val_miou", "val_mdice", "lr"} <= set(rows[0])
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in rows)
    model, ckpt = load_float_model(tmp_path / "run" / "best.pt")  # weights_only load
    assert ckpt["model_config"]["channels"] == [8, 16, 24, 32, 48, 64]
    assert result["best_miou"] == max(r["val_miou"] for r in rows)


def test_resume_continues_exactly(tiny_isic, tmp_path):
    torch.set_num_threads(1)
    train(_cfg(tiny_isic, tmp_path / "straight", epochs=2))
    train(_cfg(tiny_isic, tmp_path / "split", epochs=1))
    train(_cfg(tiny_isic, tmp_path / "split", epochs=2, resume=True))
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    assert b["epoch"] == 2
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=1e-6)
    log = (tmp_path / "split" / "log.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in log] == [1, 2]


def test_existing_run_needs_resume(tiny_isic, tmp_path):
    train(_cfg(tiny_isic, tmp_path / "run", epochs=1))
    with pytest.raises(TrainingError, match="--resume"):
        train(_cfg(tiny_isic, tmp_path / "run", epochs=1))
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(_cfg(tiny_isic, tmp_path / "other", epochs=1, resume=True))


def test_nan_loss_stops_with_clear_message(tiny_isic, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "group_loss", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 1, step 1"):
        train(_cfg(tiny_isic, tmp_path / "run", epochs=1))


def test_cli_with_split_csv(tiny_isic, tmp_path):
    ids = sorted(p.stem for p in (tiny_isic / "images").glob("*.jpg"))
    csv = tmp_path / "split.csv"
    csv.write_text("image_id,split\n" + "".join(f"{i},{'val' if n < 3 else 'train'}\n" for n, i in enumerate(ids)))
    out = subprocess.run(
        [sys.executable, "-m", "ucm.train", "--data", str(tiny_isic), "--split-csv", str(csv), "--epochs", "1",
         "--size", "128", "--out", str(tmp_path / "run"), "--no-progress"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "9 train / 3 val pairs" in out.stdout


def test_distributed_data_parallel_two_processes(tiny_isic, tmp_path):
    """torchrun with two CPU processes (gloo): the DDP path runs and rank 0 writes the checkpoints."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}", "-m", "ucm.train",
         "--data", str(tiny_isic), "--epochs", "1", "--size", "128", "--batch-size", "2", "--out", str(tmp_path / "ddp"),
         "--no-progress", "--device", "cpu"],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2 process(es)" in out.stdout
    assert (tmp_path / "ddp" / "last.pt").exists() and (tmp_path / "ddp" / "best.pt").exists()


@pytest.mark.parametrize("killed_in", ["write_log", "save_checkpoint"])
def test_kill_at_any_write_keeps_log_and_checkpoint_consistent(tiny_isic, tmp_path, monkeypatch, killed_in):
    """A kill while epoch 2 is being written (its log row, or its last.pt); --resume then continues to a log
    with every epoch exactly once."""
    real = getattr(train_module, killed_in)

    def killed(a, b):  # write_log(path, rows) / save_checkpoint(state, path)
        if killed_in == "write_log":
            epoch, name = (b[-1]["epoch"] if b else 0), "log.jsonl"
        else:
            epoch, name = a["epoch"], Path(b).name
        if epoch == 2 and name in ("log.jsonl", "last.pt"):
            raise KeyboardInterrupt
        return real(a, b)

    monkeypatch.setattr(train_module, killed_in, killed)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny_isic, tmp_path / "run", epochs=3))
    monkeypatch.setattr(train_module, killed_in, real)
    train(_cfg(tiny_isic, tmp_path / "run", epochs=3, resume=True))
    log = [json.loads(line)["epoch"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3]
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"] == 3


def test_resume_refuses_what_it_cannot_continue(tiny_isic, tmp_path):
    run = tmp_path / "run"
    train(_cfg(tiny_isic, run, epochs=1))
    with pytest.raises(TrainingError, match=r"started with --size 128 \(now 192\)"):
        train(_cfg(tiny_isic, run, epochs=2, size=192, resume=True))
    other = tmp_path / "other_data"
    shutil.copytree(tiny_isic, other)
    with pytest.raises(TrainingError, match="started with --data .*isic"):
        train(_cfg(other, run, epochs=2, resume=True))
    state = torch.load(run / "last.pt", weights_only=True)
    save_checkpoint({**state, "format": "ucm-edge/int8-v1"}, run / "last.pt")
    with pytest.raises(CheckpointError, match="resume it with python -m quantize.train"):
        train(_cfg(tiny_isic, run, epochs=2, resume=True))
    shutil.copyfile(run / "best.pt", run / "last.pt")
    with pytest.raises(CheckpointError, match="weights only .*not a training state"):
        train(_cfg(tiny_isic, run, epochs=2, resume=True))
    out = subprocess.run([sys.executable, "-m", "ucm.train", "--data", str(tiny_isic), "--out", str(run), "--resume",
                          "--size", "128", "--no-progress"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_size_that_the_model_cannot_take(tiny_isic, tmp_path):
    with pytest.raises(TrainingError, match="--size 100: sides must be multiples of 64 and at least 128"):
        train(_cfg(tiny_isic, tmp_path / "run", size=100))
    out = subprocess.run([sys.executable, "-m", "ucm.train", "--data", str(tiny_isic), "--size", "100",
                          "--out", str(tmp_path / "cli")], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and "multiples of 64" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "cli").exists()
