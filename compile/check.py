"""python -m compile.check --bundle DIR [--onnx PATH] [--data DIR] [--n N] [--json OUT]

Runs a bundle's runner (under QEMU for a foreign target) and ONNX Runtime on the same ONNX over the same
images, and reports how closely they agree: pixel agreement of the masks, and max-abs / RMSE / cosine of
the raw logits.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from compile.runner_io import load_metadata, local_command, read_logits, read_pgm, write_ppm
from ucm.data import find_pairs, load_tensors
from ucm.evaluate import onnx_predictor

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT / "data" / "sample"


@dataclass(frozen=True)
class Agreement:
    n_images: int
    pixel_agreement: float
    logits_max_abs_diff: float
    rmse: float
    cosine: float


def compare_logits(device: np.ndarray, reference: np.ndarray) -> Agreement:
    """Agreement of two stacks of logits [N, H, W] (masks are logits > 0)."""
    d, r = device.astype(np.float64), reference.astype(np.float64)
    cosine = float((d * r).sum() / max(np.linalg.norm(d) * np.linalg.norm(r), 1e-30))
    return Agreement(
        n_images=int(device.shape[0]),
        pixel_agreement=float(((d > 0) == (r > 0)).mean()),
        logits_max_abs_diff=float(np.abs(d - r).max()),
        rmse=float(np.sqrt(((d - r) ** 2).mean())),
        cosine=cosine,
    )


def run_runner(command: list[str], images: np.ndarray, names: list[str], work: Path,
               timeout_s: float = 600) -> tuple[np.ndarray, np.ndarray]:
    """Run the runner on uint8 images [N, H, W, 3]; returns masks [N, H, W] uint8 and logits [N, H, W]."""
    inputs = work / "in"
    outputs = work / "out"
    inputs.mkdir(parents=True, exist_ok=True)
    outputs.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, image in zip(names, images):
        paths.append(inputs / f"{name}.ppm")
        write_ppm(paths[-1], image)
    proc = subprocess.run([*command, "--logits", "--out", str(outputs), *map(str, paths)],
                          capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{command[-1]} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    h, w = images.shape[1:3]
    masks = np.stack([read_pgm(outputs / f"{n}.pgm") for n in names])
    logits = np.stack([read_logits(outputs / f"{n}.f32", h, w) for n in names])
    return masks, logits


def onnx_logits(onnx_path: Path, images: np.ndarray) -> np.ndarray:
    """ONNX Runtime's logits [N, H, W] for uint8 images [N, H, W, 3]."""
    floats = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)
    return onnx_predictor(onnx_path)(floats)[:, 0].numpy()


def load_images(data: Path, size: int, n: int | None) -> tuple[list[str], np.ndarray]:
    pairs = find_pairs(data)[:n] if n else find_pairs(data)
    tensors = load_tensors(pairs, size, progress=False)
    return tensors.ids, tensors.images.permute(0, 2, 3, 1).contiguous().numpy()


def check_bundle(bundle: Path, onnx_path: Path | None = None, data: Path = DEFAULT_DATA,
                 n: int | None = None) -> Agreement:
    meta = load_metadata(bundle)
    onnx_path = Path(onnx_path or meta["onnx"])
    names, images = load_images(data, meta["input"]["height"], n)
    with tempfile.TemporaryDirectory(prefix="ucm-check-") as tmp:
        _, logits = run_runner(local_command(bundle), images, names, Path(tmp))
    return compare_logits(logits, onnx_logits(onnx_path, images))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compile.check", description=__doc__.split("\n")[2])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--onnx", type=Path, default=None, help="reference ONNX (default: the one the bundle was built from)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="images (any layout the data loader accepts)")
    parser.add_argument("--n", type=int, default=None, help="use the first N images")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    parser.add_argument("--min-agreement", type=float, default=0.999, help="fail below this pixel agreement")
    args = parser.parse_args(argv)
    try:
        result = check_bundle(args.bundle, args.onnx, args.data, args.n)
    except (ValueError, RuntimeError, FileNotFoundError, subprocess.TimeoutExpired) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    report = asdict(result)
    for key, value in report.items():
        print(f"{key:20s} {value:.6g}" if isinstance(value, float) else f"{key:20s} {value}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if result.pixel_agreement < args.min_agreement:
        print(f"FAIL: pixel agreement {result.pixel_agreement:.5f} < {args.min_agreement}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
