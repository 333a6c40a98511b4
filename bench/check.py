"""python -m bench.check --bundle DIR [--onnx PATH] [--data DIR] [--n N] [--json OUT] [--min-agreement P]

Runs a bundle's runner on this machine (under QEMU for a foreign target, through the same transport as a
board run) and ONNX Runtime on the same ONNX over the same images, and reports how closely they agree: pixel
agreement of the masks, and max-abs / RMSE / MAE / cosine of the raw logits.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from bench.deploy import run_bundle_here
from compile.executor.runner_io import load_metadata
from ucm.data import load_images
from ucm.errors import run_command
from ucm.evaluate import onnx_predictor
from ucm.files import atomic_write_json
from ucm.metrics import LogitAgreement, logit_agreement
from ucm.paths import SAMPLE_DATA


def onnx_logits(onnx_path: Path, images: np.ndarray) -> np.ndarray:
    """ONNX Runtime's logits [N, H, W] for uint8 images [N, H, W, 3], in its reference mode (the same on every
    CPU: `onnx_predictor`)."""
    floats = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)
    return onnx_predictor(onnx_path, reference=True)(floats)[:, 0].numpy()


def check_bundle(bundle: Path, onnx_path: Path | None = None, data: Path = SAMPLE_DATA,
                 n: int | None = None) -> LogitAgreement:
    meta = load_metadata(bundle)
    onnx_path = Path(onnx_path or meta["onnx"])
    names, images = load_images(data, meta["input"]["height"], n)
    with tempfile.TemporaryDirectory(prefix="ucm-check-") as tmp:
        logits = run_bundle_here(bundle, names, images, Path(tmp)).logits
    return logit_agreement(logits, onnx_logits(onnx_path, images))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.check", description=__doc__.split("\n")[2])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--onnx", type=Path, default=None, help="reference ONNX (default: the one the bundle was built from)")
    parser.add_argument("--data", type=Path, default=SAMPLE_DATA, help="images (any layout the data loader accepts)")
    parser.add_argument("--n", type=int, default=None, help="use the first N images")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    parser.add_argument("--min-agreement", type=float, default=0.999, help="fail below this pixel agreement")
    args = parser.parse_args(argv)
    return run_command(lambda: _check(args))


def _check(args: argparse.Namespace) -> int:
    result = check_bundle(args.bundle, args.onnx, args.data, args.n)
    report = asdict(result)
    for key, value in report.items():
        print(f"{key:20s} {value:.6g}" if isinstance(value, float) else f"{key:20s} {value}")
    if args.json:
        atomic_write_json(args.json, report)
    if result.pixel_agreement < args.min_agreement:
        print(f"FAIL: pixel agreement {result.pixel_agreement:.5f} < {args.min_agreement}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
