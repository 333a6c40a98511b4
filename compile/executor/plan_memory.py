"""Static memory planning: one arena, offsets chosen from tensor lifetimes.

Greedy by size (the strategy of TensorFlow Lite Micro's planner): tensors are placed largest first, each at
the lowest offset where it overlaps no already placed tensor whose lifetime intersects its own. Views share
their base tensor's memory and extend its lifetime; constants live in flash, not in the arena.

How tensors of one size are ordered decides how well they pack (UCM-Net's int8 bundle: 442,368 B of arena
placing the earliest first, 393,216 B, the peak of what is alive at once, placing the longest-lived first), so
the planner places them in each of `ORDERS` and keeps the smallest arena (as TVM's USMP tries several
algorithms).
"""

from __future__ import annotations

from dataclasses import dataclass

from compile.executor.graph import ExecGraph

ALIGN = 64  # bytes; a cache line, and enough for any vector load the kernels emit


@dataclass(frozen=True)
class MemoryPlan:
    offsets: dict[int, int]  # tensor index (memory owners only) -> byte offset in the arena
    arena_bytes: int
    unshared_bytes: int  # what the same tensors would take with no sharing
    lifetimes: dict[int, tuple[int, int]]  # tensor index -> (first step, last step), steps = kernel calls


def aligned(n: int) -> int:
    """`n` bytes rounded up to the arena's alignment."""
    return (n + ALIGN - 1) // ALIGN * ALIGN


def lifetimes(graph: ExecGraph) -> dict[int, tuple[int, int]]:
    """For each tensor that owns arena memory: the first and the last kernel call that touches it."""
    spans: dict[int, list[int]] = {}
    last_step = len(graph.calls)  # the caller reads the output after the last call
    spans[graph.root(graph.input)] = [0, 0]
    for step, call in enumerate(graph.calls):
        for t in [*call.inputs, call.output]:
            if graph.tensors[t].kind == "const":
                continue
            root = graph.root(t)
            span = spans.setdefault(root, [step, step])
            span[0], span[1] = min(span[0], step), max(span[1], step)
    spans[graph.root(graph.output)][1] = last_step
    if graph.logits is not None:  # ucm_run_logits' last kernel writes them instead of the mask
        spans[graph.logits] = [last_step - 1, last_step]
    return {t: (a, b) for t, (a, b) in spans.items()}


# Tie-breaks among tensors of one size, (size, (first step, last step)) -> sort key: the earliest first, the
# latest to die first
ORDERS = ((lambda size, span: (-size, span[0])), (lambda size, span: (-size, -span[1])))


def plan_memory(graph: ExecGraph) -> MemoryPlan:
    spans = lifetimes(graph)
    plans = [_place(graph, spans, sorted(spans, key=lambda t: key(graph.tensors[t].nbytes, spans[t])))
             for key in ORDERS]
    return min(plans, key=lambda plan: plan.arena_bytes)


def _place(graph: ExecGraph, spans: dict[int, tuple[int, int]], order: list[int]) -> MemoryPlan:
    """Each tensor in `order` at the lowest offset free of the placed tensors alive with it."""
    placed: list[tuple[int, int, int]] = []  # (offset, end, tensor)
    offsets: dict[int, int] = {}
    for t in order:
        size = aligned(graph.tensors[t].nbytes)
        first, last = spans[t]
        busy = sorted((o, e) for o, e, u in placed if spans[u][0] <= last and first <= spans[u][1])
        offset = 0
        for o, e in busy:
            if offset + size <= o:
                break
            offset = max(offset, e)
        offsets[t] = offset
        placed.append((offset, offset + size, t))
    arena = max((e for _, e, _ in placed), default=0)
    unshared = sum(aligned(graph.tensors[t].nbytes) for t in spans)
    return MemoryPlan(offsets, arena, unshared, spans)


def check_plan(graph: ExecGraph, plan: MemoryPlan) -> None:
    """Assert that no two tensors alive at the same step overlap in the arena (used by the tests)."""
    items = [(t, plan.offsets[t], plan.offsets[t] + graph.tensors[t].nbytes, *plan.lifetimes[t]) for t in plan.offsets]
    for i, (t, o, e, a, b) in enumerate(items):
        assert e <= plan.arena_bytes, f"tensor {graph.tensors[t].name} ends past the arena"
        for u, o2, e2, a2, b2 in items[i + 1:]:
            if a <= b2 and a2 <= b and o < e2 and o2 < e:
                raise AssertionError(f"{graph.tensors[t].name} and {graph.tensors[u].name} overlap while both alive")
