"""In-place kernel calls: let a kernel write its output over an input that dies at that call.

TVM's kernels are out-of-place, but many (normalize-and-scale, bias + activation, requantize) are
element-wise: output element i depends on input element i only, so the output may overwrite the input in
the arena. Which ones is a property of the kernel's loop nest; rather than trusting op names, each
candidate is *verified*: the kernel, built for this host, runs on random inputs once out of place and once
in place, and the results must match bit for bit (and vary: a constant result verifies nothing). Kernels
are identical TIR on every target, so the host check stands for all of them; those tensorized with a CPU's
dot-product instruction (matrix products, never element-wise) are not candidates: this host may lack it.
"""

from __future__ import annotations

import numpy as np
import tvm

from compile.executor.graph import ExecGraph
from compile.kernels.attrs import KERNEL_PREFIX, is_tensorized
from compile.kernels.codegen import HOST_LLVM


def _random(shape: tuple[int, ...], dtype: str, rng: np.random.Generator) -> np.ndarray:
    """Random values; 8-bit data over its whole range (a narrower one can leave a requantizing kernel's
    output all clipped to one value, and such a run proves nothing)."""
    if dtype.startswith("float"):
        return rng.normal(0.0, 2.0, shape).astype(dtype)
    info = np.iinfo(dtype)
    low, high = (info.min, info.max) if info.bits == 8 else (max(info.min, -100), min(info.max, 100))
    return rng.integers(low, high + 1, shape).astype(dtype)


def candidates(graph: ExecGraph) -> list[tuple[int, int]]:
    """(call index, input position) pairs where an input of the same byte size dies at the call (a call may
    have several)."""
    last_use: dict[int, int] = {}
    for step, call in enumerate(graph.calls):
        for t in call.inputs:
            last_use[graph.root(t)] = step
    out: list[tuple[int, int]] = []
    for step, call in enumerate(graph.calls):
        out_t = graph.tensors[call.output]
        for pos, t in enumerate(call.inputs):
            tensor, root = graph.tensors[t], graph.root(t)
            if (tensor.kind == "const" or root in (graph.root(graph.input), graph.root(graph.output))
                    or last_use.get(root) != step or call.inputs.count(t) > 1
                    or graph.tensors[root].nbytes != out_t.nbytes or tensor.dtype != out_t.dtype):
                continue
            out.append((step, pos))
    return out


def verify(lib: tvm.runtime.Module, graph: ExecGraph, step: int, pos: int, seed: int = 0) -> bool:
    """Run kernel `step` out of place and with its output over input `pos`; True when results are equal."""
    call = graph.calls[step]
    fn = lib.get_function(KERNEL_PREFIX + call.kernel)
    rng = np.random.default_rng(seed)
    values = [t.value if t.kind == "const" else _random(t.shape, t.dtype, rng)
              for t in (graph.tensors[i] for i in call.inputs)]
    out = graph.tensors[call.output]
    reference = tvm.runtime.tensor(np.zeros(out.shape, out.dtype))
    fn(*[tvm.runtime.tensor(v) for v in values], reference)
    shared = tvm.runtime.tensor(values[pos].copy())  # one buffer, seen as the input and as the output
    args = [tvm.runtime.tensor(v) for v in values]
    args[pos] = shared
    fn(*args, shared._create_view(tuple(out.shape)))
    expected = reference.numpy()
    if np.unique(expected).size < 2:
        return False  # a constant output would look right whatever the kernel read: not verified
    return np.array_equal(shared.numpy().reshape(out.shape), expected, equal_nan=True)


def inplace_calls(graph: ExecGraph, kmod: tvm.IRModule) -> dict[int, int]:
    """Verified in-place calls: call index -> position of the input the output overwrites."""
    pairs = [(step, pos) for step, pos in candidates(graph) if not is_tensorized(kmod[graph.calls[step].kernel])]
    if not pairs:
        return {}
    needed = {graph.calls[step].kernel for step, _ in pairs}
    with tvm.transform.PassContext(opt_level=3):
        lib = tvm.tirx.build(tvm.IRModule({gv: f for gv, f in kmod.functions.items() if gv.name_hint in needed}),
                             target=tvm.target.Target(HOST_LLVM))
    calls: dict[int, int] = {}
    for step, pos in pairs:
        if step not in calls and all(verify(lib, graph, step, pos, seed) for seed in (0, 1)):
            calls[step] = pos
    return calls


def apply_inplace(graph: ExecGraph, calls: dict[int, int]) -> None:
    """Make each verified call's output a view of the input it overwrites (the planner then shares them)."""
    for step, pos in calls.items():
        call = graph.calls[step]
        out = graph.tensors[call.output]
        if out.kind == "temp":
            out.kind, out.base = "view", call.inputs[pos]
