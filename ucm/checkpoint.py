"""Checkpoints: written atomically, read with `weights_only=True`, always carrying their model config."""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ucm.errors import UserError
from ucm.files import atomic_write_bytes
from ucm.model import UCMNet, build_model

FLOAT_FORMAT = "ucm-edge/float-v1"
FORMATS_GROUP = "ucm_edge.checkpoint_formats"


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be used; the message names the file and what to do."""


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> None:
    """torch.save into memory, then write to a temporary file in the same folder and rename over `path`."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict safely (`weights_only=True`), with an actionable error on a bad file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes): an interrupted copy or save; use another checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        blocked = next((line for line in lines if "GLOBAL" in line), None)
        if blocked is None:  # not a pickle of objects at all: garbage or a truncated legacy file
            detail = next((line for line in lines if line.startswith("Unsupported")), "unpickling failed")
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({detail}); the file "
                                  "may be truncated or not a checkpoint at all") from e
        raise CheckpointError(
            f"{path}: refused: it holds Python objects beyond tensors and plain data ({blocked[:300]}). Loading it "
            "anyway (weights_only=False) can result in arbitrary code execution: do that only if you got the file "
            "from a trusted source, then save its plain state_dict again"
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        first_line = (str(e).splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {first_line or 'no detail'}); "
            "the file may be truncated or not a checkpoint at all"
        ) from e
    if not isinstance(ckpt, dict) or "format" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path}: not a ucm-edge checkpoint (expected a dict with 'format' and 'model' keys)")
    return ckpt


def rebuild_model(
    ckpt: dict[str, Any],
    path: str | Path,
    expected_format: str,
    build: Callable[[dict | None], nn.Module],
    what: str,
) -> nn.Module:
    """Check the checkpoint's format, build `what` from its model config and load its weights strictly."""
    if ckpt["format"] != expected_format:
        raise CheckpointError(f"{path}: checkpoint format '{ckpt['format']}' is not {what} ({expected_format})")
    try:
        model = build(ckpt.get("model_config"))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its model config cannot build a UCM-Net: {e}") from e
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: weights do not fit {what} {model.config.channels}: {str(e).splitlines()[0][:300]}; "
            "was it trained with another architecture?"
        ) from e
    return model


def model_from_checkpoint(ckpt: dict[str, Any], path: str | Path) -> UCMNet:
    """Rebuild the float UCM-Net a checkpoint describes and load its weights (strictly)."""
    return rebuild_model(ckpt, path, FLOAT_FORMAT, build_model, "a float UCM-Net")


def model_from_any_checkpoint(ckpt: dict[str, Any], path: str | Path) -> nn.Module:
    """The model a checkpoint of any registered format describes. Each format registers its builder as an
    entry point of group FORMATS_GROUP (pyproject.toml): the float one here, the int8 QAT one in `quantize`."""
    builders = {ep.name: ep for ep in entry_points(group=FORMATS_GROUP)}
    if ckpt["format"] not in builders:
        raise CheckpointError(
            f"{path}: unknown checkpoint format '{ckpt['format']}'; known: {', '.join(sorted(builders)) or 'none'} "
            "(none known: install ucm-edge with 'make setup' or 'pip install -e .')"
        )
    return builders[ckpt["format"]].load()(ckpt, path)


def load_float_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[UCMNet, dict[str, Any]]:
    ckpt = load_checkpoint(path, map_location)
    return model_from_checkpoint(ckpt, path), ckpt
