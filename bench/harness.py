"""The board harness: build (or reuse) the bundle for a board, run it there, run the float model and the
int8 ONNX on the host as references, and report parity and latency."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.deploy import run_on_board
from bench.report import (
    latency_stats,
    parity_metrics,
    plot_latency,
    plot_per_image_iou,
    plot_worst,
    write_json_atomic,
    write_markdown,
)
from compile.bundle import CompileConfig, compile_bundle, compiler_fingerprint
from compile.check import onnx_logits
from compile.runner_io import load_metadata
from compile.targets import get_target
from targets.board import BOARDS_DIR, Board, load_board
from targets.cpu import host_cpu, parse_cpuinfo
from targets.transport import Transport, sha256_file
from targets.transport_local import LocalTransport, QemuTransport
from targets.transport_ssh import SSHTransport
from ucm.checkpoint import load_float_model
from ucm.data import find_pairs, load_tensors

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class RunConfig:
    board: str
    data: Path = ROOT / "data" / "sample"
    n: int | None = None
    model_dir: Path = ROOT / "checkpoints"  # ucm_float.pt and ucm_int8.onnx
    out: Path | None = None  # default runs/<board>
    emulate: bool = False
    host: str | None = None  # USER@HOST[:PORT], overrides the board file
    trust_new_host: bool = False
    boards_dir: Path = BOARDS_DIR
    bundle_dir: Path | None = None  # default dist/<target>
    chunk: int = 8
    progress: bool = True

    def out_dir(self) -> Path:
        return self.out if self.out is not None else ROOT / "runs" / self.board.replace("/", "_")


def _log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def resolve_board(cfg: RunConfig) -> tuple[Board, bool]:
    """The board, with --host applied, and whether it is emulated."""
    board = load_board(cfg.board, cfg.boards_dir)
    if cfg.host:
        board = board.with_host(cfg.host)
    emulated = cfg.emulate or board.transport == "qemu" or (board.transport == "ssh" and not board.has_host)
    return board, emulated


def make_transport(board: Board, emulated: bool, work: Path, trust_new_host: bool) -> Transport:
    target = get_target(board.target)
    if emulated:
        return QemuTransport(board.name, target, work)
    if board.transport == "local":
        return LocalTransport(board.name, work, list(board.exec_prefix))
    return SSHTransport(board, trust_new_host=trust_new_host)


def board_cpu_description(transport: Transport, emulated: bool, timeout_s: float) -> str:
    """The board's CPU model and ISA features (its /proc/cpuinfo), or what emulates it."""
    if emulated:
        return f"emulated on this host: {host_cpu().describe()}"
    arch = transport.run(["uname", "-m"], timeout_s)
    info = transport.run(["cat", "/proc/cpuinfo"], timeout_s)
    if arch.exit_status or info.exit_status:
        return "unknown (the board has no /proc/cpuinfo)"
    return parse_cpuinfo(info.stdout, arch.stdout.strip()).describe()


def ensure_bundle(target: str, onnx: Path, bundle_dir: Path) -> dict:
    """Reuse the bundle if this compiler built it from this ONNX for this target, else compile it."""
    try:
        meta = load_metadata(bundle_dir)
        fresh = (meta["target"] == target and (bundle_dir / "ucm_runner").is_file()
                 and meta.get("onnx_sha256") == hashlib.sha256(onnx.read_bytes()).hexdigest()
                 and meta.get("compiler_sha256") == compiler_fingerprint(target))
    except (FileNotFoundError, KeyError, ValueError):
        fresh = False
    if fresh:
        _log(f"bundle {bundle_dir} is up to date")
        return meta
    return compile_bundle(CompileConfig(target=target, onnx=onnx, out=bundle_dir)).metadata


def float_reference(checkpoint: Path, images: np.ndarray) -> tuple[np.ndarray, list[float], str]:
    """Float model logits [N, H, W] and per-image latency in ms (batch 1), on CUDA if there is one."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, _ = load_float_model(checkpoint)
    model = model.to(device).eval()
    logits, times = [], []
    with torch.no_grad():
        for image in images:
            x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255).to(device)
            t0 = time.perf_counter()
            y = model(x)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
            logits.append(y[0, 0].float().cpu().numpy())
    threads = torch.get_num_threads()
    label = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU, {threads} thread{'s' if threads > 1 else ''}"
    return np.stack(logits), times, label


def run(cfg: RunConfig) -> dict:
    board, emulated = resolve_board(cfg)
    out = cfg.out_dir()
    out.mkdir(parents=True, exist_ok=True)
    onnx, float_checkpoint = cfg.model_dir / "ucm_int8.onnx", cfg.model_dir / "ucm_float.pt"
    bundle_dir = cfg.bundle_dir or ROOT / "dist" / board.target
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
        board_cpu = board_cpu_description(transport, emulated, board.ssh.connect_timeout_s)
        context = {"onnx_sha256": sha256_file(onnx), "float_checkpoint_sha256": sha256_file(float_checkpoint)}
        device = run_on_board(transport, bundle_dir / "ucm_runner", data.ids, images, out, cfg.chunk,
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
    float_lat = np.asarray(float_ms[1:] if len(float_ms) > 1 else float_ms)
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
        "board_cpu": board_cpu,
        "host_cpu": host_cpu().describe(),
        "float_device": float_label,
        "float_latency_ms_p50": float(np.percentile(float_lat, 50)),
        "float_latency_ms_p95": float(np.percentile(float_lat, 95)),
        "flash_bytes": meta["flash_bytes"],
        "ram_bytes": meta["ram_bytes"],
        "bundle": str(bundle_dir),
    }
    write_json_atomic(out / "report.json", report)
    plot_latency(device.micros, report, out / "latency_hist.png")
    plot_per_image_iou(report, out / "per_image_iou.png")
    plot_worst(images, truth, float_logits > 0, device.masks > 127, data.ids,
               metrics["per_image_iou_device_vs_float"], out / "worst_overlays.png")
    write_markdown(report, out / "report.md")
    return report
