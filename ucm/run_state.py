"""What a training run keeps on disk besides its weights: the per-epoch log (`log.jsonl`), the random number
generators' state, and the checks that `--resume` continues the same run.

Order of writes per epoch (`ucm.train`): the log row, `best.pt`, then `last.pt`. A kill at any point leaves
either both at the same epoch or one log row beyond `last.pt`, which `--resume` drops and recomputes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ucm.checkpoint import CheckpointError, load_checkpoint
from ucm.errors import UserError
from ucm.files import atomic_write_bytes


class TrainingError(UserError, RuntimeError):
    """Training cannot go on; the message says why and what to do."""


def write_log(path: Path, rows: list[dict]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in rows).encode())


# Options that decide which data a run trains and selects on: a resumed run must keep them.
DATA_OPTIONS = ("data", "split_csv", "train_split", "val_split", "val_data", "layout", "size")
TRAINING_STATE_KEYS = ("optimizer", "scheduler", "rng", "best_miou", "epoch")


def _same_option(name: str, old, new) -> bool:
    if name in ("data", "split_csv", "val_data") and old and new:
        return Path(old).resolve() == Path(new).resolve()
    return old == new


def load_training_state(path: Path, options: dict, checkpoint_format: str) -> dict:
    """The full training state in `path` to resume a run with these options (TrainConfig as a dict) from; refuses a weights-only checkpoint, one of another
    format (float vs int8) and one whose run used other data options."""
    ckpt = load_checkpoint(path, map_location="cpu")
    if ckpt["format"] != checkpoint_format:
        tool = "python -m quantize.train" if ckpt["format"].startswith("ucm-edge/int8") else "python -m ucm.train"
        raise CheckpointError(f"{path}: a '{ckpt['format']}' run, not '{checkpoint_format}'; resume it with {tool}")
    missing = [k for k in TRAINING_STATE_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"{path}: weights only (no {', '.join(missing)}), not a training state; --resume needs the last.pt that "
            "training writes (start a new run from these weights instead)"
        )
    started = ckpt.get("train_config", {})
    changed = [f"--{n.replace('_', '-')} {started.get(n)!s} (now {options.get(n)!s})"
               for n in DATA_OPTIONS if n in started and not _same_option(n, started[n], options.get(n))]
    if changed:
        raise TrainingError(
            f"{path}: this run was started with {'; '.join(changed)}; resume with the options it started with, "
            "or start a new run with another --out"
        )
    return ckpt


def read_log(path: Path, upto_epoch: int | None = None) -> list[dict]:
    """The rows of a log.jsonl (up to an epoch); none when the file does not exist."""
    if not path.exists():
        return []
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TrainingError(f"{path}: not a training log (one JSON object a line): {e}") from e
    if any(not isinstance(r, dict) or "epoch" not in r for r in rows):
        raise TrainingError(f"{path}: a row without 'epoch': not a log.jsonl written by training")
    return [r for r in rows if upto_epoch is None or r["epoch"] <= upto_epoch]


def rng_state(shuffle: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, shuffle: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    shuffle.set_state(state["shuffle"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
