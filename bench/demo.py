"""The README's main job on the shipped sample: load the shipped checkpoints, score them, time them.

    python -m bench.demo [--data data/sample] [--out runs/demo]

Stages that exist today: the float UCM-Net (PyTorch) and its ONNX export (ONNX Runtime), on the CPU, one
thread. It prints one table row per model: mIoU / mDice / mIoU* / mDice* against the ground truth, pixel
agreement with the float model, and the median latency per 256x256 image.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from ucm.checkpoint import CheckpointError, load_float_model
from ucm.data import DataError, find_pairs, load_tensors
from ucm.evaluate import Predictor, onnx_predictor, predict_masks, score, torch_predictor
from ucm.export import export_float_onnx

REPO = Path(__file__).resolve().parents[1]


def median_latency_ms(predict: Predictor, image: torch.Tensor, repeats: int = 20) -> float:
    predict(image)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(image)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(REPO / "data" / "sample"))
    ap.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "ucm_float.pt"))
    ap.add_argument("--out", default=str(REPO / "runs" / "demo"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        data = load_tensors(find_pairs(args.data), 256, progress=False)
        model, _ = load_float_model(args.checkpoint)
    except (DataError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    onnx_path = export_float_onnx(model, Path(args.out) / "ucm_float.onnx")
    predictors = {"float PyTorch (CPU)": torch_predictor(model), "float ONNX Runtime (CPU)": onnx_predictor(onnx_path, threads=1)}
    print(f"{len(data)} images from {args.data}, 256x256, 1 CPU thread")
    header = f"{'model':28s} {'mIoU':>6s} {'mDice':>6s} {'mIoU*':>6s} {'mDice*':>6s} {'agree':>7s} {'ms/img':>7s}"
    print(header + "\n" + "-" * len(header))
    reference = None
    for name, predict in predictors.items():
        pred = predict_masks(predict, data)
        reference = pred if reference is None else reference
        m = score(pred, data.masks)
        agree = (pred == reference).float().mean().item()
        ms = median_latency_ms(predict, data.images[:1].float() / 255)
        print(
            f"{name:28s} {100 * m['miou']:6.2f} {100 * m['mdice']:6.2f} {100 * m['miou_star']:6.2f} "
            f"{100 * m['mdice_star']:6.2f} {100 * agree:6.2f}% {ms:7.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
