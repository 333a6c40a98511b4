"""The README's main job on the shipped sample, end to end.

    python -m bench.demo [--data data/sample] [--board rpi4] [--out runs/demo]

1. The host models from the shipped checkpoints: the float UCM-Net (PyTorch), the int8 QAT model
   (Brevitas fake-quant), and the shipped ONNX exports of both (`checkpoints/ucm_float.onnx`, QCDQ
   `checkpoints/ucm_int8.onnx`) run with ONNX Runtime; CPU, one thread. One row per model: mIoU / mDice /
   mIoU* / mDice* against the ground truth, pixel agreement with the float model, median latency.
2. The int8 ONNX compiled for the board's target (`python -m compile`, reused when up to date) and run on
   the board by the harness (`bench/run.py`): emulated with QEMU when the board has no host configured.
   Prints the board's parity and latency table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from bench.harness import RunConfig
from bench.harness import run as run_board
from bench.report import table
from quantize.export import deployable
from quantize.model import model_from_qat_checkpoint
from targets.cpu import host_cpu
from ucm.checkpoint import load_checkpoint, load_float_model
from ucm.data import load_tensors
from ucm.errors import run_command
from ucm.evaluate import Predictor, onnx_predictor, predict_masks, score, torch_predictor
from ucm.pairs import find_pairs
from ucm.paths import CHECKPOINTS, FLOAT_CHECKPOINT, FLOAT_ONNX, INT8_ONNX, RUNS, SAMPLE_DATA


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
    ap.add_argument("--data", default=str(SAMPLE_DATA))
    ap.add_argument("--checkpoint", default=str(FLOAT_CHECKPOINT))
    ap.add_argument("--int8-checkpoint", default=str(CHECKPOINTS / "ucm_int8_qat.pt"))
    ap.add_argument("--float-onnx", default=str(FLOAT_ONNX))
    ap.add_argument("--int8-onnx", default=str(INT8_ONNX))
    ap.add_argument("--repeats", type=int, default=20, help="timed runs per model (median reported)")
    ap.add_argument("--board", default="rpi4", help="board for stage 2 (python -m targets list)")
    ap.add_argument("--out", default=str(RUNS / "demo"))
    args = ap.parse_args(argv)
    return run_command(lambda: _demo(args))


def _demo(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    data = load_tensors(find_pairs(args.data), 256, progress=False)
    model, _ = load_float_model(args.checkpoint)
    int8_model = model_from_qat_checkpoint(load_checkpoint(args.int8_checkpoint), args.int8_checkpoint)
    predictors = {
        "float PyTorch": torch_predictor(model),
        "float ONNX Runtime": onnx_predictor(args.float_onnx, threads=1),
        "int8 QAT Brevitas (fake-q)": torch_predictor(deployable(int8_model)),
        "int8 QCDQ ONNX Runtime": onnx_predictor(args.int8_onnx, threads=1),
    }
    print(f"{len(data)} images from {args.data}, 256x256, 1 CPU thread; CPU: {host_cpu().describe()}")
    header = f"{'model (CPU)':28s} {'mIoU':>6s} {'mDice':>6s} {'mIoU*':>6s} {'mDice*':>6s} {'agree':>7s} {'ms/img':>7s}"
    print(header + "\n" + "-" * len(header))
    reference = None
    for name, predict in predictors.items():
        pred = predict_masks(predict, data)
        reference = pred if reference is None else reference
        m = score(pred, data.masks)
        agree = (pred == reference).float().mean().item()
        ms = median_latency_ms(predict, data.images[:1].float() / 255, args.repeats)
        print(
            f"{name:28s} {100 * m['miou']:6.2f} {100 * m['mdice']:6.2f} {100 * m['miou_star']:6.2f} "
            f"{100 * m['mdice_star']:6.2f} {100 * agree:6.2f}% {ms:7.2f}"
        )
    print()
    cfg = RunConfig(board=args.board, data=Path(args.data), out=Path(args.out) / args.board, progress=False)
    report = run_board(cfg)
    print(table(report))
    print(f"report: {cfg.out_dir() / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
