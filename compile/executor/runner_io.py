"""The files a bundle's `ucm_runner` reads and writes (PPM in; PGM masks, float32 logits, timings.tsv out),
and the bundle's metadata.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from compile.errors import CompileError


def write_ppm(path: Path, rgb_hwc: np.ndarray) -> None:
    """A binary PPM (P6) of an HxWx3 uint8 image."""
    h, w, c = rgb_hwc.shape
    if c != 3 or rgb_hwc.dtype != np.uint8:
        raise ValueError(f"{path}: expected an HxWx3 uint8 image, got {rgb_hwc.dtype}{list(rgb_hwc.shape)}")
    path.write_bytes(f"P6\n{w} {h}\n255\n".encode() + np.ascontiguousarray(rgb_hwc).tobytes())


def read_pgm(path: Path) -> np.ndarray:
    """A binary PGM (P5, maxval 255) as an HxW uint8 array."""
    data = path.read_bytes()
    parts = data.split(maxsplit=4)
    if len(parts) < 5 or parts[0] != b"P5" or parts[3] != b"255":
        raise ValueError(f"{path}: not an 8-bit binary PGM")
    w, h = int(parts[1]), int(parts[2])
    pixels = parts[4]
    if len(pixels) != w * h:
        raise ValueError(f"{path}: expected {w * h} pixels, found {len(pixels)}")
    return np.frombuffer(pixels, dtype=np.uint8).reshape(h, w)


def read_logits(path: Path, height: int, width: int) -> np.ndarray:
    data = np.fromfile(path, dtype="<f4")
    if data.size != height * width:
        raise ValueError(f"{path}: expected {height * width} float32 logits, found {data.size}")
    return data.reshape(height, width)


def read_timings(path: Path) -> dict[str, int]:
    """name -> microseconds from the runner's timings.tsv (the firmware adds a column of clock ticks)."""
    rows = path.read_text().splitlines()[1:]
    return {fields[0]: int(fields[1]) for fields in (row.split("\t") for row in rows if row)}


def load_metadata(bundle: Path) -> dict:
    path = bundle / "metadata.json"
    if not path.is_file():
        raise CompileError(f"{bundle}: no metadata.json; build a bundle with python -m compile")
    return json.loads(path.read_text())
