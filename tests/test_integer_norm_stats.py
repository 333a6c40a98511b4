"""compile.passes.integer_norm_stats on a decomposed norm of an int8 value (Before / Expected): its mean and
standard deviation become one kernel over the int8 input, read through two slices, with the float
computation's values up to its rounding; a norm of a float value is left alone."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from conftest import run_relax
from tvm import relax
from tvm.s_tir import Schedule

from compile.kernels.fusion import fuse, kernel_module
from compile.kernels.rules import rule_schedule
from compile.passes.integer_norm_stats import _sums_fit, integer_norm_stats, norm_stats_kernel

SHAPE, AXES, EPS = (1, 4, 6, 5), (2, 3), np.float32(1e-5)
SCALE, ZP = np.float32(0.05), 3
RNG = np.random.default_rng(3)


def _dq(bb: relax.BlockBuilder, q: relax.Expr, doubled: bool) -> relax.Var:
    def one() -> relax.Var:
        return bb.emit(relax.op.dequantize(q, relax.const(SCALE), relax.const(np.int8(ZP)), axis=1))
    return bb.emit(relax.op.add(one(), one())) if doubled else one()


def _norm(stats, doubled: bool = False) -> tvm.IRModule:
    """int8 q -> (x - mean(x)) / std(x), each reader with its own dequantize (as int8_dataflow leaves it)."""
    bb = relax.BlockBuilder()
    q = relax.Var("q", relax.TensorType(SHAPE, "int8"))
    with bb.function("main", [q]):
        with bb.dataflow():
            mean, std = stats(bb, q, lambda: _dq(bb, q, doubled))
            centred = bb.emit(relax.op.subtract(_dq(bb, q, doubled), mean))
            out = bb.emit_output(bb.emit(relax.op.divide(centred, std)))
        bb.emit_func_output(out)
    return bb.get()


def _float_stats(bb, _q, x):
    mean = bb.emit(relax.op.mean(x(), axis=list(AXES), keepdims=True))
    variance = bb.emit(relax.op.variance(x(), axis=list(AXES), keepdims=True))
    return mean, bb.emit(relax.op.sqrt(bb.emit(relax.op.add(variance, relax.const(EPS)))))


def _expected(doubled: bool) -> tvm.IRModule:
    scale = SCALE * 2 if doubled else SCALE

    def stats(bb, q, _x):
        gv = bb.add_func(norm_stats_kernel(SHAPE, AXES, "int8", float(EPS)), "norm_stats_int8")
        args = [q, relax.const(np.array([scale], np.float32)), relax.const(np.array([ZP], np.int32))]
        both = bb.emit(relax.call_tir(gv, args, relax.TensorType((2, 1, 4, 1, 1), "float32")))
        return [bb.emit(relax.op.reshape(bb.emit(relax.op.strided_slice(both, axes=[0], begin=[i], end=[i + 1])),
                                         [1, 4, 1, 1])) for i in (0, 1)]
    return _norm(stats, doubled)


@pytest.mark.parametrize("doubled", [False, True])
def test_stats_from_integer_sums(doubled: bool) -> None:
    before = _norm(_float_stats, doubled)
    after, count = integer_norm_stats(before)
    assert count == 1
    expected = _expected(doubled)
    after_main = relax.analysis.remove_all_unused(after["main"])
    tvm.ir.assert_structural_equal(after_main, expected["main"], map_free_vars=True)
    q = RNG.integers(-128, 128, SHAPE).astype(np.int8)
    x = (q.astype(np.float64) - ZP) * SCALE * (2 if doubled else 1)
    exact = (x - x.mean(axis=AXES, keepdims=True)) / np.sqrt(x.var(axis=AXES, keepdims=True) + EPS)
    np.testing.assert_allclose(run_relax(after, q), exact, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run_relax(after, q), run_relax(before, q), rtol=1e-5, atol=1e-5)


def test_the_statistics_kernel_reads_int8_and_adds_integers() -> None:
    fused, _ = fuse(integer_norm_stats(_norm(_float_stats))[0])
    kernels = kernel_module(fused, exported=False)
    script = kernels["norm_stats_int8"].script()
    assert '"int8")' in script.split("\n")[4]  # the first input is the int8 value itself
    assert "T.Cast(\"float32\", T.Cast(\"int32\"" not in script  # no element is converted to float
    assert not any(n.startswith("norm_") and n != "norm_stats_int8" for n in (gv.name_hint for gv in kernels.functions))


def test_a_norm_of_a_float_value_is_left_alone() -> None:
    def float_input(bb, q, _x):
        x = bb.emit(relax.op.exp(_dq(bb, q, False)))
        return _float_stats(bb, q, lambda: x)
    _, count = integer_norm_stats(_norm(float_input))
    assert count == 0


def test_sums_that_could_overflow_int32_keep_the_float_path() -> None:
    assert _sums_fit((1, 8, 128, 128), (2, 3), "int8")
    assert not _sums_fit((1, 1, 512, 512), (2, 3), "uint8")  # 262144 * 255^2 > 2^31


def test_both_sums_are_computed_once_per_group_not_stored_for_all() -> None:
    """The rule moves the two sums under the group loop of their consumer, outside its loop over the two
    statistics: their intermediates are one element each (stored for every group they took 128 KiB of
    workspace for a 16384-token LayerNorm), computed once for the mean and the deviation."""
    sch = Schedule(rule_schedule(norm_stats_kernel((1, 256, 8), (2,), "int8", float(EPS)), macs=0))
    stats = sch.get_loops(sch.get_sblock("stats"))
    assert [int(sch.get(lp).extent) for lp in stats] == [1, 256, 1, 2]  # the statistic innermost
    for sums in ("s1", "s2"):
        assert [sch.get(lp) for lp in sch.get_loops(sch.get_sblock(sums))[:-1]] == [sch.get(lp) for lp in stats[:-1]]
