import json

from PIL import Image

from ucm.plot import main


def test_plot_writes_png_and_rejects_empty_log(tmp_path):
    log = tmp_path / "run_log.jsonl"
    log.write_text("".join(json.dumps({"epoch": e, "train_loss": 1.0 / e, "val_miou": 0.5 + e / 100}) + "\n" for e in range(1, 6)))
    assert main([str(log), "--out", str(tmp_path / "p.png")]) == 0
    assert Image.open(tmp_path / "p.png").size[0] > 500
    (tmp_path / "empty.jsonl").write_text("")
    assert main([str(tmp_path / "empty.jsonl"), "--out", str(tmp_path / "q.png")]) == 2
