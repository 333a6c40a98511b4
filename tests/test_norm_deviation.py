"""compile.passes.norm_deviation on a decomposed norm (Before / Expected, as TVM tests its own passes): the
standard deviation becomes one kernel that reuses the norm's mean, the values stay the same, and fusion puts
its square root once per group instead of once per element."""

from __future__ import annotations

import numpy as np
import tvm
from conftest import run_relax
from tvm import relax
from tvm.script import relax as R

from compile.kernels.fusion import fuse, kernel_module
from compile.passes.norm_deviation import norm_deviation, norm_std_kernel

SHAPE, AXES, EPS = (1, 4, 6, 5), [2, 3], np.float32(1e-5)
RNG = np.random.default_rng(2)


def _dq(bb: relax.BlockBuilder, q: relax.Expr) -> relax.Var:
    return bb.emit(relax.op.dequantize(q, relax.const(np.float32(0.05)), relax.const(np.int8(3)), axis=1))


def _norm(std_of) -> tvm.IRModule:
    """int8 q -> (x - mean(x)) / std(x), each reader with its own dequantize (as int8_dataflow leaves it)."""
    bb = relax.BlockBuilder()
    q = relax.Var("q", R.Tensor(SHAPE, "int8"))
    with bb.function("main", [q]):
        with bb.dataflow():
            mean = bb.emit(relax.op.mean(_dq(bb, q), axis=AXES, keepdims=True))
            centred = bb.emit(relax.op.subtract(_dq(bb, q), mean))
            std = std_of(bb, _dq(bb, q), mean)
            out = bb.emit_output(bb.emit(relax.op.divide(centred, std)))
        bb.emit_func_output(out)
    return bb.get()


def _before() -> tvm.IRModule:
    def std_of(bb, x, _mean):
        variance = bb.emit(relax.op.variance(x, axis=AXES, keepdims=True))
        return bb.emit(relax.op.sqrt(bb.emit(relax.op.add(variance, relax.const(EPS)))))
    return _norm(std_of)


def _expected() -> tvm.IRModule:
    kernel = {}

    def std_of(bb, x, mean):
        kernel["gv"] = bb.add_func(norm_std_kernel(SHAPE, (2, 3), float(EPS)), "norm_std")
        return bb.emit(relax.call_tir(kernel["gv"], [x, mean], mean.ty))
    return _norm(std_of)


def test_std_from_the_mean_same_values() -> None:
    before = _before()
    after, count = norm_deviation(before)
    assert count == 1
    tvm.ir.assert_structural_equal(after, _expected())
    q = RNG.integers(-128, 128, SHAPE).astype(np.int8)
    np.testing.assert_array_equal(run_relax(after, q), run_relax(before, q))


def test_fused_norm_takes_one_square_root_per_group() -> None:
    """Without the pass the normalizing kernel computes sqrt(variance + eps) for every element."""
    def sqrt_in_normalize(fused: tvm.IRModule) -> bool:
        kernels = kernel_module(fused, exported=False)
        last = [b.value.args[0] for blk in fused["main"].body.blocks for b in blk.bindings
                if isinstance(b.value, relax.Call) and b.value.op.name == "relax.call_tir"][-1]
        return "T.sqrt" in kernels[last.name_hint].script()

    assert sqrt_in_normalize(fuse(_before())[0])
    fused, _ = fuse(norm_deviation(_before())[0])
    assert not sqrt_in_normalize(fused)
    names = [gv.name_hint for gv in fused.functions]
    assert "norm_std" not in names  # no unused copy left to compile
    assert any(n.startswith("fused_dequantize") and "norm_std" in n for n in names)  # it reads the int8 value


def test_a_variance_of_another_value_is_left_alone() -> None:
    def std_of(bb, x, _mean):
        doubled = bb.emit(relax.op.multiply(x, relax.const(np.float32(2))))  # its mean is not the one computed
        variance = bb.emit(relax.op.variance(doubled, axis=AXES, keepdims=True))
        return bb.emit(relax.op.sqrt(bb.emit(relax.op.add(variance, relax.const(EPS)))))
    _, count = norm_deviation(_norm(std_of))
    assert count == 0
