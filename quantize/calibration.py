"""What post-training quantizers calibrate on: the first sample images as the float model's input, and the
command-line options that choose them (shared by `quantize.ort_static` and `quantize.pt2e`)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ucm.data import load_images
from ucm.paths import SAMPLE_DATA


def calibration_batches(data: Path, size: int, n: int) -> list[np.ndarray]:
    """The first `n` images under `data` as float32 [1, 3, size, size] in [0, 1]."""
    _, images = load_images(data, size, n)
    return [im.transpose(2, 0, 1)[None].astype(np.float32) / 255 for im in images]


def add_calibration_arguments(parser: argparse.ArgumentParser) -> None:
    """--out (the int8 ONNX to write), --n and --data (the calibration images)."""
    parser.add_argument("--out", type=Path, required=True, help="the int8 QDQ ONNX to write")
    parser.add_argument("--n", type=int, default=8, help="calibration images from the shipped sample (default 8)")
    parser.add_argument("--data", type=Path, default=SAMPLE_DATA, help="calibration images")
