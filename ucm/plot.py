"""Plot training logs (`log.jsonl` of ucm.train / quantize.train): train loss and val mIoU per epoch.

    python -m ucm.plot checkpoints/ucm_float_log.jsonl [more logs ...] --out docs/training.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ucm.errors import run_command  # noqa: E402
from ucm.run_state import TrainingError, read_log  # noqa: E402


def plot_logs(paths: list[Path], out: Path) -> None:
    fig, (ax_loss, ax_miou) = plt.subplots(1, 2, figsize=(10, 3.6))
    lows = []
    for path in paths:
        rows = read_log(path)
        if not rows:
            raise TrainingError(f"{path}: no training log there, or an empty one")
        missing = {"train_loss", "val_miou"} - set(rows[0])
        if missing:
            raise TrainingError(f"{path}: rows lack {sorted(missing)}: not a log.jsonl written by training")
        epochs = [r["epoch"] for r in rows]
        label = path.stem.removesuffix("_log")
        ax_loss.plot(epochs, [r["train_loss"] for r in rows], label=label)
        ax_miou.plot(epochs, [100 * r["val_miou"] for r in rows], label=label)
        ious = sorted(100 * r["val_miou"] for r in rows)
        lows.append(ious[len(ious) // 10])  # zoom past the first epochs' near-zero mIoU
        best = max(rows, key=lambda r: r["val_miou"])
        ax_miou.scatter([best["epoch"]], [100 * best["val_miou"]], marker="*", s=80, zorder=3)
        ax_miou.annotate(f"{100 * best['val_miou']:.2f}", (best["epoch"], 100 * best["val_miou"]),
                         textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax_loss.set(xlabel="epoch", ylabel="train loss (group loss)", title="training loss")
    ax_miou.set(xlabel="epoch", ylabel="val mIoU (%)", title="validation mIoU (best starred)")
    ax_miou.set_ylim(bottom=max(0.0, min(lows) - 1.0))
    for ax in (ax_loss, ax_miou):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ucm.plot", description=__doc__.split("\n\n")[0])
    ap.add_argument("logs", nargs="+", type=Path, help="log.jsonl files")
    ap.add_argument("--out", type=Path, default=Path("runs/training.png"))
    args = ap.parse_args(argv)
    return run_command(lambda: _plot(args.logs, args.out))


def _plot(logs: list[Path], out: Path) -> int:
    plot_logs(logs, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
