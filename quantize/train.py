"""Int8 UCM-Net: calibrate from a float checkpoint, then fine-tune with quantization-aware training (QAT).

    python -m quantize.train --from checkpoints/ucm_float.pt --data DIR [--split-csv CSV] [--epochs 20]
        [--out runs/qat] [--resume] [--ptq]

The float weights are loaded into the int8 model (`quantize.model`), activation scales are calibrated on
`--calib-images` training images (no augmentation), then QAT fine-tunes everything, scales included, with
the float recipe's group loss and augmentation at a lower learning rate (AdamW 5e-5, cosine to 1e-6 over the
run). Same manners as `ucm.train`: progress bar, `OUT/log.jsonl`, atomic `OUT/last.pt` / `OUT/best.pt`,
`--resume`. `--ptq` stops after calibration (post-training quantization, the baseline for QAT), scores
the calibrated model on the val split and writes `OUT/best.pt`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from quantize.model import INT8_FORMAT, qat_model_from_float, quiet_brevitas
from ucm.checkpoint import load_checkpoint, save_checkpoint
from ucm.data import PairTensors
from ucm.errors import run_command
from ucm.evaluate import resolve_device
from ucm.train import (
    TrainConfig,
    add_train_arguments,
    config_from_args,
    evaluate_model,
    load_split,
    model_checkpoint,
    report_training,
    train,
)

with quiet_brevitas():
    from brevitas.graph.calibrate import calibration_mode

QAT_DEFAULTS = TrainConfig(data="", out="runs/qat", epochs=20, lr=5e-5, t_max=20, eta_min=1e-6)


@torch.no_grad()
def calibrate(
    model: torch.nn.Module, data: PairTensors, device: torch.device, n_images: int, batch_size: int = 8, progress: bool = True
) -> None:
    """Set every activation quantizer's scale from statistics of `n_images` training images (Brevitas).

    The model runs in train mode so that the training-only stage heads are calibrated too (UCM-Net has no
    batch norm or dropout: train and eval mode compute the same logits); uncalibrated heads start QAT with
    saturated inputs and a group loss 60% too high.
    """
    model.train()
    n = min(n_images, len(data))
    with calibration_mode(model):
        for start in tqdm(range(0, n, batch_size), desc="calibrate", leave=False, disable=not progress):
            index = torch.arange(start, min(start + batch_size, n), device=data.images.device)
            images, _ = data.batch(index, device)
            model(images)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m quantize.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="from_checkpoint", default="checkpoints/ucm_float.pt", help="float checkpoint")
    ap.add_argument("--calib-images", type=int, default=256, help="training images used to calibrate scales")
    ap.add_argument("--ptq", action="store_true", help="calibrate only (post-training quantization), no QAT")
    add_train_arguments(ap, QAT_DEFAULTS)
    args = ap.parse_args(argv)
    cfg = config_from_args(args)
    if cfg.t_max == QAT_DEFAULTS.t_max and cfg.epochs != QAT_DEFAULTS.epochs:
        cfg = replace(cfg, t_max=cfg.epochs)  # one cosine decay over the whole fine-tuning by default
    return run_command(lambda: _quantize(cfg, args))


def _quantize(cfg: TrainConfig, args: argparse.Namespace) -> int:
    float_ckpt = load_checkpoint(args.from_checkpoint)
    model = qat_model_from_float(float_ckpt, args.from_checkpoint)
    record = {
        "from_checkpoint": str(args.from_checkpoint),
        "from_metrics": float_ckpt.get("metrics"),
        "calib_images": args.calib_images,
        "method": "ptq" if args.ptq else "qat",
    }

    def prepare(m: torch.nn.Module, train_data: PairTensors, device: torch.device) -> None:
        calibrate(m, train_data, device, args.calib_images, progress=cfg.progress)

    if args.ptq:
        return _run_ptq(cfg, model, prepare, record)
    return report_training(train(cfg, model, INT8_FORMAT, prepare, record))


def _run_ptq(cfg: TrainConfig, model: torch.nn.Module, prepare, record: dict) -> int:
    device = resolve_device(cfg.device)
    train_data, val_data = load_split(cfg, device)
    model = model.to(device)
    prepare(model, train_data, device)
    metrics = evaluate_model(model, val_data, device)
    out = Path(cfg.out) / "best.pt"
    save_checkpoint(model_checkpoint(model, cfg, INT8_FORMAT, 0, metrics, record), out)
    print(
        f"PTQ on {metrics['n_images']} val images: mIoU {100 * metrics['miou']:.2f}  mDice {100 * metrics['mdice']:.2f}  "
        f"mIoU* {100 * metrics['miou_star']:.2f}  mDice* {100 * metrics['mdice_star']:.2f}; wrote {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
