"""memory.png of a bundle: the arena's live bytes over the kernel calls, the peak marked with the tensors
that hold it (`compile.executor.memory_profile`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ucm.files import atomic_write_bytes  # noqa: E402


def plot_memory(profile: dict, title: str, path: Path) -> None:
    calls = profile["calls"]
    kib = [c["live_bytes"] / 1024 for c in calls]
    peak = profile["peak"]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.fill_between(range(len(kib)), kib, step="mid", color="#4477aa", alpha=0.35)
    ax.plot(range(len(kib)), kib, drawstyle="steps-mid", color="#4477aa", label="live tensors")
    ax.axhline(profile["arena_bytes"] / 1024, color="k", ls="--", lw=1,
               label=f"arena {profile['arena_bytes'] / 1024:,.0f} KiB (planned, with alignment and gaps)")
    holders = "\n".join(f"{t['dtype']}{t['shape']} {t['bytes'] / 1024:,.0f} KiB, written by {t['written_by'][:48]}"
                        for t in peak["tensors"])
    ax.annotate(f"peak {peak['live_bytes'] / 1024:,.0f} KiB at call {peak['call']} "
                f"({calls[peak['call']]['kernel'][:40] if calls else ''}):\n{holders}",
                xy=(peak["call"], peak["live_bytes"] / 1024), xytext=(0.02, 0.97), textcoords="axes fraction",
                va="top", fontsize=7, arrowprops={"arrowstyle": "->", "lw": 0.8},
                bbox={"boxstyle": "round", "fc": "white", "alpha": 0.9})
    ax.set_xlabel("kernel call")
    ax.set_ylabel("KiB alive in the arena")
    ax.set_title(title, fontsize=9)
    ax.set_ylim(0, max([*kib, profile["arena_bytes"] / 1024]) * 1.45)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    staged = path.with_suffix(".tmp.png")
    fig.savefig(staged, dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, staged.read_bytes())
    staged.unlink()
