"""Evaluate a segmentation model on image/mask pairs: mIoU, mDice, mIoU*, mDice* (threshold 0.5).

    python -m ucm.evaluate --checkpoint checkpoints/ucm_float.pt --data DIR [--split-csv CSV --split val]
        [--json OUT] [--overlays DIR]

`--checkpoint` takes a float checkpoint (`.pt`) or an ONNX file (run with ONNX Runtime).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from ucm.checkpoint import CheckpointError, load_checkpoint, model_from_any_checkpoint
from ucm.data import DataError, PairTensors, load_tensors
from ucm.errors import run_command
from ucm.files import atomic_write_json
from ucm.metrics import SegmentationMeter, binarize_logits
from ucm.model import input_size_problem
from ucm.pairs import LAYOUT_NAMES, find_pairs

Predictor = Callable[[torch.Tensor], torch.Tensor]
"""Maps float images [B, 3, H, W] in [0, 1] to logits [B, 1, H, W] (on the CPU)."""


def resolve_device(name: str) -> torch.device:
    """"auto": CUDA if present, else the CPU; or the device named."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def torch_predictor(model: torch.nn.Module, device: torch.device | str = "cpu") -> Predictor:
    model = model.to(device).eval()

    @torch.no_grad()
    def predict(images: torch.Tensor) -> torch.Tensor:
        return model(images.to(device)).float().cpu()

    return predict


def onnx_session(model: str | Path | bytes, threads: int = 0, reference: bool = False):
    """An ONNX Runtime CPU session for a file or its bytes. `reference`: run the graph as ONNX defines it, without
    the graph optimizations that fuse QuantizeLinear / DequantizeLinear pairs into ONNX Runtime's integer kernels.
    Those kernels depend on the CPU: on x86-64 without VNNI they sum uint8 x int8 products in saturating 16-bit
    pairs (ONNX Runtime's quantization guide says so; its `reduce_range` option exists for it): this project's
    int8 model scored mIoU 82.19 on `val` that way on an AVX2 AMD EPYC, 82.93 on an AVX-512 VNNI Xeon, and 82.93
    in reference mode on the EPYC. Every parity check uses the reference mode."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    if reference:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts,
                                providers=["CPUExecutionProvider"])


def onnx_predictor(path: str | Path, threads: int = 0, reference: bool = False) -> Predictor:
    """ONNX Runtime on the CPU (`reference`: `onnx_session`'s)."""
    try:
        session = onnx_session(path, threads, reference)
    except Exception as e:  # onnxruntime raises its own exception types
        raise CheckpointError(f"{path}: ONNX Runtime cannot load this model: {e}") from e
    name = session.get_inputs()[0].name
    expected = session.get_inputs()[0].shape  # e.g. [1, 3, 256, 256]; symbolic dims are strings

    def predict(images: torch.Tensor) -> torch.Tensor:
        got = [1, *images.shape[1:]]
        if any(isinstance(e, int) and e != g for e, g in zip(expected, got)):
            raise CheckpointError(f"{path}: the model takes input {expected}, the images are {got}; pass --size {expected[-1]}")
        # One image at a time: exported graphs may have a fixed batch of 1.
        outs = [session.run(None, {name: img[None].numpy().astype(np.float32)})[0] for img in images]
        return torch.from_numpy(np.concatenate(outs))

    return predict


def load_predictor(path: str | Path, device: torch.device | str = "cpu", onnx_reference: bool = False) -> Predictor:
    """A predictor for a float checkpoint, an int8 QAT checkpoint, or an ONNX file (`onnx_reference`: ONNX
    Runtime's reference mode, `onnx_predictor`)."""
    path = Path(path)
    if path.suffix == ".onnx":
        return onnx_predictor(path, reference=onnx_reference)
    ckpt = load_checkpoint(path, map_location="cpu")
    return torch_predictor(model_from_any_checkpoint(ckpt, path), device)


def predict_masks(predict: Predictor, data: PairTensors, batch_size: int = 16, progress: bool = False) -> torch.Tensor:
    """Boolean predicted masks [N, 1, H, W] for every pair in `data`."""
    out = []
    for start in tqdm(range(0, len(data), batch_size), desc="predict", disable=not progress, leave=False):
        index = torch.arange(start, min(start + batch_size, len(data)))
        images, _ = data.batch(index, "cpu")
        out.append(binarize_logits(predict(images)))
    return torch.cat(out)


def score(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float | int]:
    meter = SegmentationMeter()
    meter.update(pred, target)
    return meter.summary()


def _contour(mask: torch.Tensor) -> torch.Tensor:
    """Boundary pixels of a boolean mask [H, W] (mask minus its 3x3 erosion)."""
    m = mask[None, None].float()
    eroded = -F.max_pool2d(-m, 3, stride=1, padding=1)
    return (m - eroded)[0, 0] > 0


def write_overlays(data: PairTensors, pred: torch.Tensor, folder: str | Path) -> None:
    """One PNG per image: ground-truth contour in green, predicted contour in red."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, image_id in enumerate(data.ids):
        rgb = data.images[i].permute(1, 2, 0).numpy().copy()
        rgb[_contour(data.masks[i, 0].bool()).numpy()] = (0, 255, 0)
        rgb[_contour(pred[i, 0]).numpy()] = (255, 0, 0)
        Image.fromarray(rgb).save(folder / f"{image_id}.png")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ucm.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="checkpoints/ucm_float.pt", help="float .pt, int8 QAT .pt, or .onnx")
    ap.add_argument("--data", required=True, help="folder of image/mask pairs (any layout the loader accepts)")
    ap.add_argument("--layout", default="auto", choices=LAYOUT_NAMES)
    ap.add_argument("--split-csv", help="CSV with an image id column and a split column")
    ap.add_argument("--split", help="which split of --split-csv to evaluate (e.g. val)")
    ap.add_argument("--size", type=int, default=256, help="side the images are resized to (default 256)")
    ap.add_argument("--json", help="write the metrics as JSON here")
    ap.add_argument("--overlays", help="write contour overlays (green: truth, red: prediction) into this folder")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--onnx-reference", action="store_true",
                    help="an .onnx checkpoint as ONNX defines it, without ONNX Runtime's fused integer kernels "
                         "(whose results depend on the CPU)")
    args = ap.parse_args(argv)
    return run_command(lambda: _evaluate(args))


def _evaluate(args: argparse.Namespace) -> int:
    problem = input_size_problem(args.size, args.size)
    if problem:
        raise DataError(f"--size {args.size}: {problem}")
    if args.onnx_reference and Path(args.checkpoint).suffix != ".onnx":  # before the images are read
        raise CheckpointError(f"{args.checkpoint}: --onnx-reference applies to .onnx files; drop it for this "
                              "checkpoint, or pass the model's .onnx export")
    pairs = find_pairs(args.data, args.layout, split_csv=args.split_csv, split=args.split)
    data = load_tensors(pairs, args.size)
    predict = load_predictor(args.checkpoint, resolve_device(args.device), args.onnx_reference)
    pred = predict_masks(predict, data, progress=True)
    metrics = score(pred, data.masks)
    print(
        f"{args.checkpoint} on {metrics['n_images']} images: mIoU {100 * metrics['miou']:.2f}  "
        f"mDice {100 * metrics['mdice']:.2f}  mIoU* {100 * metrics['miou_star']:.2f}  "
        f"mDice* {100 * metrics['mdice_star']:.2f}"
    )
    if args.json:
        atomic_write_json(args.json, metrics)
    if args.overlays:
        write_overlays(data, pred, args.overlays)
        print(f"overlays written to {args.overlays}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
