"""A zero-padded input block (`pad_temp`) written as zeros first, then the input rows copied in vectors.

As TVM builds it, each padded element is an `if_then_else` on its position, which LLVM leaves scalar: for a
float input (the float stem, `compile.kernels.stem`, and the float depthwise convs,
`compile.passes.depthwise_float`) one int -> float conversion per element. TVM's `decompose_padding` splits
the block into a fill of the pad value and a copy of the in-bound region, whose rows have no condition left
and are vectorized here (x86-64 AVX2: the stem's two kernels 2.01 -> 0.74 and 1.34 -> 0.65 ms with their
float accumulation; the depthwise convs in `compile.kernels.rules`).
"""

from __future__ import annotations

from tvm.s_tir import Schedule

FLOAT_LANES = 8  # float32 values per AVX2 register


def loops_below(sch: Schedule, block, at) -> list:
    """The loops around `block` inside loop `at`, outermost first."""
    loops = sch.get_loops(block)
    return loops[next(i for i, lp in enumerate(loops) if sch.get_sref(lp).same_as(sch.get_sref(at))) + 1:]


def copy_padding_in_vectors(sch: Schedule, pad, at, lanes: int = FLOAT_LANES) -> None:
    """Decompose padding block `pad` (computed under loop `at`) below `at`; vectorize the copy's rows by `lanes`
    where they divide."""
    sch.decompose_padding(pad, loops_below(sch, pad, at)[0])
    *_, columns = sch.get_loops(pad)
    if int(sch.get(columns).extent) % lanes == 0:
        sch.vectorize(sch.split(columns, [None, lanes])[1])
