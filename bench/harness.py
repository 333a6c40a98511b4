"""The board harness: build (or reuse) the bundle for a board, run it there, run the float model and the
int8 ONNX on the host as references, and report parity and latency."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.check import onnx_logits
from bench.deploy import run_on_board
from bench.report import (
    latency_stats,
    parity_metrics,
    plot_latency,
    plot_per_image_iou,
    plot_worst,
    warm_runs,
    write_markdown,
)
from compile.bundle import ensure_bundle
from compile.toolchains import get_target
from targets.board import BOARDS_DIR
from targets.connect import make_transport, resolve_board
from targets.cpu import board_cpu, host_cpu
from targets.transport_qemu_system import icount_instructions
from ucm.checkpoint import load_float_model
from ucm.data import load_tensors
from ucm.evaluate import resolve_device
from ucm.files import atomic_write_json, sha256_file
from ucm.pairs import find_pairs
from ucm.paths import CHECKPOINTS, DIST, RUNS, SAMPLE_DATA


@dataclass(frozen=True)
class RunConfig:
    board: str
    data: Path = SAMPLE_DATA
    n: int | None = None
    model_dir: Path = CHECKPOINTS  # ucm_float.pt and ucm_int8.onnx
    out: Path | None = None  # default runs/<board>
    emulate: bool = False
    host: str | None = None  # USER@HOST[:PORT], overrides the board file
    trust_new_host: bool = False
    boards_dir: Path = BOARDS_DIR
    bundle_dir: Path | None = None  # default dist/<target>
    chunk: int = 8
    progress: bool = True

    def out_dir(self) -> Path:
        return self.out if self.out is not None else RUNS / self.board.replace("/", "_")


def _log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def float_reference(checkpoint: Path, images: np.ndarray) -> tuple[np.ndarray, list[float], str]:
    """Float model logits [N, H, W] and per-image latency in ms (batch 1), on CUDA if there is one."""
    device = resolve_device("auto")
    model, _ = load_float_model(checkpoint)
    model = model.to(device).eval()
    logits, times = [], []
    with torch.no_grad():
        for image in images:
            x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255).to(device)
            t0 = time.perf_counter()
            y = model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
            logits.append(y[0, 0].float().cpu().numpy())
    threads = torch.get_num_threads()
    label = torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU, {threads} thread{'s' if threads > 1 else ''}"
    return np.stack(logits), times, label


def instructions_per_image(micros: list[int], shift: int | None) -> list[int] | None:
    """Instructions per image where the board's clock is QEMU's -icount virtual time, to the nearest thousand
    (the runner reports microseconds); None for other boards."""
    return None if shift is None else [round(icount_instructions(us / 1e6, shift)) for us in micros]


def run(cfg: RunConfig) -> dict:
    board, emulated = resolve_board(cfg.board, cfg.boards_dir, cfg.host, cfg.emulate)
    out = cfg.out_dir()
    out.mkdir(parents=True, exist_ok=True)
    onnx, float_checkpoint = cfg.model_dir / "ucm_int8.onnx", cfg.model_dir / "ucm_float.pt"
    bundle_dir = cfg.bundle_dir or DIST / board.target
    meta = ensure_bundle(board.target, onnx, bundle_dir)
    size = meta["input"]["height"]
    pairs = find_pairs(cfg.data)
    pairs = pairs[: cfg.n] if cfg.n else pairs
    data = load_tensors(pairs, size, progress=False)
    images = data.images.permute(0, 2, 3, 1).contiguous().numpy()
    truth = data.masks[:, 0].numpy().astype(bool)

    transport = make_transport(board, emulated, out / "board_work", cfg.trust_new_host)
    _log(f"board {board.name}: {transport.describe()}" + ("  [EMULATED: latency not representative]" if emulated else ""))
    try:
        cpu = board_cpu(transport, emulated, board.ssh.connect_timeout_s)
        context = {"onnx_sha256": meta["onnx_sha256"], "float_checkpoint_sha256": sha256_file(float_checkpoint)}
        device = run_on_board(transport, bundle_dir / get_target(board.target).runner, data.ids, images, out, cfg.chunk,
                              board.ssh.command_timeout_s, cfg.progress, context)
    finally:
        transport.close()
    for note in device.discarded:
        _log(note)
    if device.resumed:
        _log(f"resumed: {device.resumed} images were finished by an earlier run")

    _log("host references: float PyTorch and int8 ONNX Runtime")
    float_logits, float_ms, float_label = float_reference(float_checkpoint, images)
    ref_logits = onnx_logits(onnx, images)
    metrics = parity_metrics(device.masks > 127, float_logits > 0, truth, device.logits, ref_logits, ref_logits > 0)
    lat = latency_stats(device.micros)
    float_lat = warm_runs(float_ms)
    report = {
        "board": board.name,
        "target": board.target,
        "transport": transport.describe(),
        "emulated": emulated,
        "latency_note": "emulated: not representative of the real board" if emulated else "measured on the board",
        "n_images": len(data.ids),
        "images": data.ids,
        **metrics,
        "device_latency_ms_min": lat["min"], "device_latency_ms_p50": lat["p50"],
        "device_latency_ms_p95": lat["p95"], "device_latency_ms_max": lat["max"],
        "device_latency_us": device.micros,
        "board_cpu": cpu,
        "host_cpu": host_cpu().describe(),
        "float_device": float_label,
        "float_latency_ms_p50": float(np.percentile(float_lat, 50)),
        "float_latency_ms_p95": float(np.percentile(float_lat, 95)),
        "instructions_per_image": instructions_per_image(device.micros, transport.icount_shift),
        "firmware": meta.get("firmware"),
        "flash_bytes": meta["flash_bytes"],
        "ram_bytes": meta["ram_bytes"],
        "bundle": str(bundle_dir),
    }
    atomic_write_json(out / "report.json", report)
    plot_latency(device.micros, report, out / "latency_hist.png")
    plot_per_image_iou(report, out / "per_image_iou.png")
    plot_worst(images, truth, float_logits > 0, device.masks > 127, data.ids,
               metrics["per_image_iou_device_vs_float"], out / "worst_overlays.png")
    write_markdown(report, out / "report.md")
    return report
