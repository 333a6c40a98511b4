"""Train UCM-Net with the paper's recipe.

    python -m ucm.train --data DIR [--split-csv CSV] [--epochs 300] [--batch-size 8] [--out runs/NAME] [--resume]

Defaults are the paper's: AdamW (lr 1e-3, weight decay 0.01), CosineAnnealingLR (T_max 50, eta_min 1e-5),
batch 8, 256x256, group loss, flips + rotation. The data set is decoded into memory once; augmentation
runs on the training device. CPU or CUDA is picked automatically; several GPUs with
`torchrun --nproc_per_node=N -m ucm.train ...` (DistributedDataParallel; the batch size is per process).

Every epoch writes `OUT/last.pt` (full training state, for `--resume`), `OUT/best.pt` (weights of the best
val mIoU so far) and `OUT/log.jsonl` (one line per epoch), each atomically.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from ucm.checkpoint import FLOAT_FORMAT, CheckpointError, save_checkpoint
from ucm.data import DataError, JointAugment, PairTensors, load_tensors
from ucm.errors import run_command
from ucm.evaluate import predict_masks, resolve_device, score, torch_predictor
from ucm.losses import group_loss
from ucm.model import UCMNetConfig, build_model, input_size_problem
from ucm.pairs import LAYOUT_NAMES, find_pairs
from ucm.run_state import TrainingError, load_training_state, read_log, rng_state, set_rng_state, write_log


@dataclass
class TrainConfig:
    data: str
    out: str = "runs/ucm"
    split_csv: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    val_data: str | None = None
    layout: str = "auto"
    size: int = 256
    epochs: int = 300
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    t_max: int = 50
    eta_min: float = 1e-5
    seed: int = 0
    workers: int = 4
    device: str = "auto"
    resume: bool = False
    progress: bool = True


def split_data(cfg: TrainConfig) -> tuple[list, list]:
    if cfg.split_csv:
        train = find_pairs(cfg.data, cfg.layout, split_csv=cfg.split_csv, split=cfg.train_split)
        val = find_pairs(cfg.data, cfg.layout, split_csv=cfg.split_csv, split=cfg.val_split)
    elif cfg.val_data:
        train, val = find_pairs(cfg.data, cfg.layout), find_pairs(cfg.val_data, cfg.layout)
    else:
        pairs = find_pairs(cfg.data, cfg.layout)
        if len(pairs) < 2:
            raise DataError(f"{cfg.data}: need at least 2 pairs to hold one out for validation")
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
        n_val = max(1, len(pairs) // 5)
        val = [pairs[i] for i in sorted(order[:n_val])]
        train = [pairs[i] for i in sorted(order[n_val:])]
    overlap = {p.id for p in train} & {p.id for p in val}
    if overlap:
        raise DataError(f"train and val share {len(overlap)} images, e.g. {sorted(overlap)[:3]}")
    return train, val


def load_split(cfg: TrainConfig, device: torch.device, progress: bool = True) -> tuple[PairTensors, PairTensors]:
    """Decode the train and val pairs into memory; the train set goes to `device` (~0.3 GB at 256x256) so
    batches are sliced there, the val set stays on the CPU."""
    problem = input_size_problem(cfg.size, cfg.size)
    if problem:
        raise TrainingError(f"--size {cfg.size}: {problem}")
    train_pairs, val_pairs = split_data(cfg)
    train_data = load_tensors(train_pairs, cfg.size, cfg.workers, cfg.progress and progress, "decode train")
    val_data = load_tensors(val_pairs, cfg.size, cfg.workers, cfg.progress and progress, "decode val")
    return train_data.to(device), val_data


def model_checkpoint(
    model: nn.Module, cfg: TrainConfig, checkpoint_format: str, epoch: int, metrics: dict, record: dict | None
) -> dict:
    """The weights-only checkpoint (what `best.pt` holds): weights on the CPU, configs, metrics, `record`."""
    return {
        "format": checkpoint_format,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "epoch": epoch,
        "metrics": metrics,
        "model_config": model.config.to_dict(),
        "train_config": asdict(cfg),
        **(record or {}),
    }


def evaluate_model(model: nn.Module, data: PairTensors, device: torch.device, batch_size: int = 32) -> dict:
    was_training = model.training
    pred = predict_masks(torch_predictor(model, device), data, batch_size)
    model.train(was_training)
    return score(pred, data.masks)


def train(
    cfg: TrainConfig,
    model: nn.Module | None = None,
    checkpoint_format: str = FLOAT_FORMAT,
    prepare: Callable[[nn.Module, PairTensors, torch.device], None] | None = None,
    record: dict | None = None,
) -> dict:
    """Run (or resume) training; returns the best val mIoU. Raises DataError, CheckpointError, TrainingError.

    `model` defaults to a fresh UCM-Net; `prepare(model, train_data, device)` runs once before the first epoch
    of a new run (the int8 stage calibrates its quantizers there); `record` is stored in every checkpoint.
    """
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank, world = 0, 1
    device = resolve_device(cfg.device)
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    main_process = rank == 0
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed + rank)
    shuffle = torch.Generator().manual_seed(cfg.seed)

    train_data, val_data = load_split(cfg, device, main_process)
    if main_process:
        print(f"data: {len(train_data)} train / {len(val_data)} val pairs from {cfg.data}; device {device}, {world} process(es)")

    model = (model if model is not None else build_model(UCMNetConfig())).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.t_max, eta_min=cfg.eta_min)
    start_epoch, best_miou, log = 0, -1.0, []
    if cfg.resume:
        if not (out / "last.pt").exists():
            raise CheckpointError(f"{out / 'last.pt'}: nothing to resume (train without --resume to start)")
        ckpt = load_training_state(out / "last.pt", asdict(cfg), checkpoint_format)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"], shuffle)
        start_epoch, best_miou = ckpt["epoch"], ckpt["best_miou"]
        log = read_log(out / "log.jsonl", start_epoch)
        if main_process:
            write_log(out / "log.jsonl", log)  # drops a row written for an epoch whose last.pt was not
            print(f"resumed from {out / 'last.pt'} after epoch {start_epoch} (best val mIoU {best_miou:.4f})")
    elif main_process and (out / "last.pt").exists():
        raise TrainingError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    elif prepare is not None:
        prepare(model, train_data, device)
    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    augment = JointAugment().to(device)

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        net.train()
        order = torch.randperm(len(train_data), generator=shuffle)[rank::world]
        steps = math.ceil(len(order) / cfg.batch_size)
        running, seen = torch.zeros((), device=device), 0
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and main_process), leave=False)
        for step in bar:
            index = order[step * cfg.batch_size : (step + 1) * cfg.batch_size].to(device)
            images, masks = augment(*train_data.batch(index, device))
            logits, heads = net(images)
            loss = group_loss(logits, heads, masks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.detach() * len(index)
            seen += len(index)
            if step % 10 == 0 or step == steps - 1:
                value = loss.item()
                if not math.isfinite(value):
                    raise TrainingError(
                        f"loss became {value} at epoch {epoch + 1}, step {step + 1}; the last good state is "
                        f"{out / 'last.pt'} (resume with a lower --lr, or check the data for broken masks)"
                    )
                bar.set_postfix(loss=f"{value:.4f}")
        scheduler.step()
        train_loss = running.item() / max(seen, 1)
        if distributed:
            dist.barrier()
        if not main_process:
            continue
        metrics = evaluate_model(model, val_data, device)
        row = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": train_loss,
            **{f"val_{k}": v for k, v in metrics.items() if k != "n_images"},
            "seconds": round(time.perf_counter() - t0, 2),
        }
        log.append(row)
        # The log row first, last.pt last: a kill in between leaves a row that --resume drops and recomputes.
        write_log(out / "log.jsonl", log)
        weights = model_checkpoint(model, cfg, checkpoint_format, epoch + 1, metrics, record)
        if metrics["miou"] > best_miou:
            best_miou = metrics["miou"]
            save_checkpoint(weights, out / "best.pt")
        training_state = {
            "best_miou": best_miou,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(shuffle),
        }
        save_checkpoint({**weights, **training_state}, out / "last.pt")
        print(
            f"epoch {epoch + 1:3d}/{cfg.epochs}  loss {train_loss:.4f}  val mIoU {100 * metrics['miou']:.2f}  "
            f"mDice {100 * metrics['mdice']:.2f}  best {100 * best_miou:.2f}  ({row['seconds']:.1f}s)",
            flush=True,
        )
    if distributed:
        dist.destroy_process_group()
    return {"best_miou": best_miou, "epochs": cfg.epochs, "out": str(out)}


def add_train_arguments(ap: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    """The training options shared by float training and int8 QAT, with `defaults` as their defaults."""
    ap.add_argument("--data", required=True, help="folder of image/mask pairs (any layout the loader accepts)")
    ap.add_argument("--split-csv", help="CSV with an image id column and a split column (train/val)")
    ap.add_argument("--train-split", default=defaults.train_split)
    ap.add_argument("--val-split", default=defaults.val_split)
    ap.add_argument("--val-data", help="separate validation folder (without --split-csv); default: hold out 20%%")
    ap.add_argument("--layout", default="auto", choices=LAYOUT_NAMES)
    ap.add_argument("--out", default=defaults.out)
    for name in ("size", "epochs", "batch_size", "t_max", "seed", "workers"):
        ap.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    for name in ("lr", "weight_decay", "eta_min"):
        ap.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    ap.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    ap.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = vars(args)
    return TrainConfig(**{f.name: values[f.name] for f in fields(TrainConfig)})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ucm.train", description=__doc__.split("\n\n")[0])
    add_train_arguments(ap, TrainConfig(data=""))
    cfg = config_from_args(ap.parse_args(argv))
    return run_command(lambda: report_training(train(cfg)))


def report_training(result: dict) -> int:
    print(f"done: best val mIoU {100 * result['best_miou']:.2f}; checkpoints in {result['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
