"""compile.kernels.row_sums on a per-token norm statistics kernel: the same values as the unscheduled kernel,
each token's sums tensorized as a row load and one horizontal add, the statistics of LANES tokens computed in
vectors; rows shorter than MIN_ROW are left to LLVM."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm.s_tir import Schedule

from compile.kernels.attrs import LANES
from compile.kernels.row_sums import MIN_ROW
from compile.kernels.rules import RuleOptions, rule_schedule
from compile.passes.integer_norm_stats import norm_stats_kernel

TOKENS = 64
RNG = np.random.default_rng(11)
ROW_SUMS = RuleOptions(row_sums=True)


def _stats(func: tvm.tirx.PrimFunc, q: np.ndarray) -> np.ndarray:
    lib = tvm.tirx.build(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target="llvm")
    out = tvm.runtime.tensor(np.zeros((2, 1, TOKENS, 1), np.float32))
    lib["main"](tvm.runtime.tensor(q), tvm.runtime.tensor(np.array([0.05], np.float32)),
                tvm.runtime.tensor(np.array([3], np.int32)), out)
    return out.numpy()


def _kernel(channels: int) -> tvm.tirx.PrimFunc:
    return norm_stats_kernel((1, TOKENS, channels), (2,), "int8", 1e-5)


@pytest.mark.parametrize("channels", [16, 24, 48])
def test_row_sums_keep_the_values_and_load_rows(channels: int) -> None:
    func = _kernel(channels)
    scheduled = rule_schedule(func, 0, ROW_SUMS)
    q = RNG.integers(-128, 128, (1, TOKENS, channels)).astype(np.int8)
    q[0, 0] = -128  # a row at the extreme: sum(q * q) = 128^2 x channels
    np.testing.assert_array_equal(_stats(scheduled, q), _stats(func, q))
    script = scheduled.script()
    assert script.count("llvm.vector.reduce.add") == 2  # sum(q) and sum(q * q), each a row at a time
    sch = Schedule(scheduled)
    stats_loops = [sch.get(lp) for lp in sch.get_loops(sch.get_sblock("stats"))]
    assert stats_loops[-1].kind == tvm.tirx.ForKind.VECTORIZED and int(stats_loops[-1].extent) == LANES


def test_short_rows_are_left_to_llvm() -> None:
    scheduled = rule_schedule(_kernel(MIN_ROW // 2), 0, ROW_SUMS)
    assert "llvm.vector.reduce.add" not in scheduled.script()
