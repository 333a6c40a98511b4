"""The arena's live memory over the kernel calls, from the memory plan: how many bytes are alive at each
call, where the peak is, which tensors hold it, and what the kernels write by element type (recorded in
metadata.json, drawn as memory.png)."""

from __future__ import annotations

from compile.executor.graph import ExecGraph
from compile.executor.plan_memory import MemoryPlan, aligned


def memory_profile(graph: ExecGraph, plan: MemoryPlan, top: int = 6) -> dict:
    """Per kernel call: the kernel and the bytes alive in the arena (aligned tensors whose lifetime covers
    it); the peak call and its largest live tensors."""
    steps = []
    for step, call in enumerate(graph.calls):
        live = [t for t, (first, last) in plan.lifetimes.items() if first <= step <= last]
        steps.append({"call": step, "kernel": call.kernel,
                      "live_bytes": sum(aligned(graph.tensors[t].nbytes) for t in live)})
    peak = max(steps, key=lambda s: s["live_bytes"], default={"call": 0, "live_bytes": 0})
    at_peak = [t for t, (first, last) in plan.lifetimes.items() if first <= peak["call"] <= last]
    holders = sorted(at_peak, key=lambda t: -graph.tensors[t].nbytes)[:top]
    written: dict[str, dict[str, int]] = {}  # what the kernels store, by element type
    for call in graph.calls:
        t = graph.tensors[call.output]
        row = written.setdefault(t.dtype, {"tensors": 0, "bytes": 0})
        row["tensors"] += 1
        row["bytes"] += t.nbytes
    writers = {graph.root(c.output): c.kernel for c in graph.calls}
    writers[graph.root(graph.input)] = "the caller (model input)"
    return {
        "arena_bytes": plan.arena_bytes,
        "peak": {"call": peak["call"], "live_bytes": peak["live_bytes"],
                 "tensors": [{"name": graph.tensors[t].name, "written_by": writers.get(t, "?"),
                              "shape": list(graph.tensors[t].shape),
                              "dtype": graph.tensors[t].dtype, "bytes": graph.tensors[t].nbytes} for t in holders]},
        "calls": steps,
        "written": written,
    }
