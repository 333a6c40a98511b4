"""The parity / latency report of a board run: numbers (report.json), a Markdown page and three plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from ucm.evaluate import score
from ucm.metrics import logit_agreement

EMULATED_NOTE = "EMULATED board (QEMU): latency is NOT representative of the real board"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def warm_runs(values: list[float]) -> np.ndarray:
    """The runs after the first (cold caches, lazy page-in), or the only one."""
    return np.asarray(values[1:] if len(values) > 1 else values, dtype=np.float64)


def latency_stats(micros: list[int]) -> dict[str, float]:
    """min / p50 / p95 / max in ms of the warm runs."""
    ms = warm_runs(micros) / 1e3
    return {"min": float(ms.min()), "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "max": float(ms.max())}


def parity_metrics(device_masks: np.ndarray, float_masks: np.ndarray, truth: np.ndarray,
                   device_logits: np.ndarray, ref_logits: np.ndarray, ref_masks: np.ndarray) -> dict:
    """Masks: bool [N, H, W]. ref_*: the int8 ONNX run with ONNX Runtime on the host."""
    dev = score(torch.from_numpy(device_masks[:, None]), torch.from_numpy(truth[:, None]))
    flt = score(torch.from_numpy(float_masks[:, None]), torch.from_numpy(truth[:, None]))
    agreement = logit_agreement(device_logits, ref_logits)
    per_image = [iou(a, b) for a, b in zip(device_masks, float_masks)]
    return {
        "device_miou": dev["miou"], "device_mdice": dev["mdice"],
        "device_miou_star": dev["miou_star"], "device_mdice_star": dev["mdice_star"],
        "float_miou": flt["miou"], "float_mdice": flt["mdice"],
        "float_miou_star": flt["miou_star"], "float_mdice_star": flt["mdice_star"],
        "delta_miou": dev["miou"] - flt["miou"],
        "mean_iou_device_vs_float": float(np.mean(per_image)),
        "pixel_agreement": float((device_masks == float_masks).mean()),
        "pixel_agreement_int8_reference": float((device_masks == ref_masks).mean()),
        "logits_rmse": agreement.rmse,
        "logits_mae": agreement.mae,
        "logits_cosine": agreement.cosine,
        "per_image_iou_device_vs_float": per_image,
        "per_image_iou_device": [iou(a, b) for a, b in zip(device_masks, truth)],
        "per_image_iou_float": [iou(a, b) for a, b in zip(float_masks, truth)],
    }


def table(report: dict) -> str:
    """The parity and latency table printed at the end of a run."""
    pct = lambda v: f"{100 * v:7.2f}"
    lines = []
    if report["emulated"]:
        lines.append(f"*** {EMULATED_NOTE} ***")
    lines += [
        f"board {report['board']} ({report['target']}), {report['transport']}, {report['n_images']} images",
        f"{'model':36s} {'mIoU':>7s} {'mDice':>7s} {'mIoU*':>7s} {'mDice*':>7s} {'p50 ms':>9s} {'p95 ms':>9s}",
        (f"{'float PyTorch (' + report['float_device'] + ')':36s} {pct(report['float_miou'])} "
        f"{pct(report['float_mdice'])} {pct(report['float_miou_star'])} {pct(report['float_mdice_star'])} "
        f"{report['float_latency_ms_p50']:9.2f} {report['float_latency_ms_p95']:9.2f}"),
        (f"{'int8 C on ' + report['board'] + (' (emulated)' if report['emulated'] else ''):36s} "
        f"{pct(report['device_miou'])} {pct(report['device_mdice'])} {pct(report['device_miou_star'])} "
        f"{pct(report['device_mdice_star'])} {report['device_latency_ms_p50']:9.2f} "
        f"{report['device_latency_ms_p95']:9.2f}"),
        (f"delta mIoU (board - float) {100 * report['delta_miou']:+.2f} points; board vs float: mean IoU "
        f"{pct(report['mean_iou_device_vs_float'])}%, pixel agreement {pct(report['pixel_agreement'])}%"),
        (f"board vs int8 ONNX Runtime on host: pixel agreement {pct(report['pixel_agreement_int8_reference'])}%, "
        f"logits RMSE {report['logits_rmse']:.4f}, MAE {report['logits_mae']:.4f}, cosine {report['logits_cosine']:.6f}"),
        f"board CPU: {report['board_cpu']}",
        f"host CPU (float reference): {report['host_cpu']}",
        (f"flash: code {report['flash_bytes']['code']:,} B + weights {report['flash_bytes']['weights']:,} B; "
        f"RAM {report['ram_bytes']['total']:,} B (arena {report['ram_bytes']['arena']:,}, workspace "
        f"{report['ram_bytes']['workspace']:,}, io {report['ram_bytes']['io']:,})"),
    ]
    if report.get("instructions_per_image"):
        counts = report["instructions_per_image"]
        lines.append(f"instructions per image (QEMU icount), not cycles: median {int(np.median(counts)):,} "
                     f"(min {min(counts):,}, max {max(counts):,}); the ms above are QEMU's virtual time")
    if report.get("firmware"):
        fw = report["firmware"]
        lines.append(f"firmware ELF: flash {fw['flash']:,} B, RAM {fw['ram']:,} B (.data + .bss + heap + stack) "
                     f"of the {fw['ram_budget']:,} B budget")
    return "\n".join(lines)


def write_markdown(report: dict, path: Path) -> None:
    body = [f"# ucm-edge board run: {report['board']}", ""]
    if report["emulated"]:
        body += [f"> **{EMULATED_NOTE}.**", ""]
    body += ["```", table(report), "```", "", "![latency](latency_hist.png)", "",
             "![per-image IoU](per_image_iou.png)", "", "![worst images](worst_overlays.png)", ""]
    path.write_text("\n".join(body))


def plot_latency(micros: list[int], report: dict, path: Path) -> None:
    ms = warm_runs(micros) / 1e3
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(ms, bins=min(30, max(5, len(ms))), color="#4477aa")
    ax.axvline(report["device_latency_ms_p50"], color="k", ls="--", label=f"p50 {report['device_latency_ms_p50']:.1f} ms")
    ax.set_xlabel("ms per 256x256 image (first run excluded)")
    ax.set_ylabel("images")
    title = f"{report['board']}: int8 latency"
    ax.set_title(title + (" (EMULATED, not representative)" if report["emulated"] else ""))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_per_image_iou(report: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(report["per_image_iou_float"], report["per_image_iou_device"], s=12, color="#aa3377")
    ax.plot([0, 1], [0, 1], color="grey", lw=1)
    ax.set_xlabel("float model IoU vs ground truth")
    ax.set_ylabel(f"board ({report['board']}) IoU vs ground truth")
    ax.set_title("per-image IoU, board vs float")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_worst(images: np.ndarray, truth: np.ndarray, float_masks: np.ndarray, device_masks: np.ndarray,
               names: list[str], per_image: list[float], path: Path, k: int = 4) -> None:
    """Image, ground truth, float mask, board mask for the k images where board and float differ most."""
    worst = np.argsort(per_image)[:k]
    fig, axes = plt.subplots(len(worst), 4, figsize=(8, 2.1 * len(worst)), squeeze=False)
    for row, i in enumerate(worst):
        for col, (img, title) in enumerate([(images[i], names[i]), (truth[i], "ground truth"),
                                            (float_masks[i], "float"), (device_masks[i], f"board (IoU vs float {per_image[i]:.3f})")]):
            ax = axes[row, col]
            ax.imshow(img, cmap=None if img.ndim == 3 else "gray")
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
