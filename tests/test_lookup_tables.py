"""compile.passes.lookup_tables: an element-wise chain from one int8 value to a quantize becomes a table over the
256 int8 levels and a lookup, with the same values bit for bit; chains that would need a table larger than a
quarter of their input, or that read two int8 values, are left alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tvm
from conftest import run_relax
from tvm import relax

from compile.kernels.fusion import fuse, kernel_module
from compile.passes.lookup_tables import lookup_tables
from compile.toolchains import get_target

RNG = np.random.default_rng(5)


def _dq(bb: relax.BlockBuilder, q: relax.Expr, scale: float = 0.05, zp: int = 3) -> relax.Var:
    return bb.emit(relax.op.dequantize(q, relax.const(np.float32(scale)), relax.const(np.int8(zp)), axis=1))


def _quantize(bb: relax.BlockBuilder, x: relax.Expr) -> relax.Var:
    return bb.emit(relax.op.quantize(x, relax.const(np.float32(0.04)), relax.const(np.int8(-2)), axis=1))


def _module(shape, param_shapes, chain) -> tvm.IRModule:
    """main(q int8, *float params) -> quantize(chain(bb, q, params))."""
    bb = relax.BlockBuilder()
    q = relax.Var("q", relax.TensorType(shape, "int8"))
    params = [relax.Var(f"p{i}", relax.TensorType(s, "float32")) for i, s in enumerate(param_shapes)]
    with bb.function("main", [q, *params]):
        with bb.dataflow():
            out = bb.emit_output(_quantize(bb, chain(bb, q, params)))
        bb.emit_func_output(out)
    return bb.get()


def _plane_norm(bb, q, params):
    mean, std = params
    gamma = relax.const(RNG.normal(size=(4, 1, 1)).astype(np.float32))
    beta = relax.const(RNG.normal(size=(4, 1, 1)).astype(np.float32))
    centred = bb.emit(relax.op.divide(bb.emit(relax.op.subtract(_dq(bb, q), mean)), std))
    return bb.emit(relax.op.add(bb.emit(relax.op.multiply(centred, gamma)), beta))


def _gelu(bb, q, _params):
    erf = bb.emit(relax.op.erf(bb.emit(relax.op.divide(_dq(bb, q), relax.const(np.float32(1.4142135))))))
    half = bb.emit(relax.op.multiply(_dq(bb, q), relax.const(np.float32(0.5))))
    return bb.emit(relax.op.multiply(half, bb.emit(relax.op.add(erf, relax.const(np.float32(1))))))


def _inputs(shape, param_shapes):
    q = RNG.integers(-128, 128, shape).astype(np.int8)
    return [q, *(RNG.uniform(0.5, 2, s).astype(np.float32) for s in param_shapes)]


def test_plane_norm_is_a_table_per_channel_with_the_same_values() -> None:
    shape, params = (1, 4, 32, 32), [(1, 4, 1, 1), (1, 4, 1, 1)]
    before = _module(shape, params, _plane_norm)
    after, count = lookup_tables(before)
    assert count == 1
    inputs = _inputs(shape, params)
    np.testing.assert_array_equal(run_relax(after, *inputs), run_relax(before, *inputs))
    fused, _ = fuse(after)
    kernels = kernel_module(fused, exported=False)
    assert "lookup" in [gv.name_hint for gv in fused.functions]
    script = kernels["lookup"].script()
    assert 'T.Buffer((1, 4, 1, 1, 256), "int8")' in script  # a table per channel
    assert "table[0, v_i1, 0, 0, T.Cast(\"int32\", q[v_i0, v_i1, v_i2, v_i3]) + 128]" in script


def test_gelu_is_one_table_with_the_same_values() -> None:
    shape = (1, 8, 16, 16)
    before = _module(shape, [], _gelu)
    after, count = lookup_tables(before)
    assert count == 1
    inputs = _inputs(shape, [])
    np.testing.assert_array_equal(run_relax(after, *inputs), run_relax(before, *inputs))


def test_a_lookup_reads_its_value_through_the_layout_ops_before_it() -> None:
    """GELU of planes -> tokens (UCM-Net's form): one kernel reads the planes, no transposed copy first."""
    def tokens_gelu(bb, q, params):
        tokens = bb.emit(relax.op.permute_dims(bb.emit(relax.op.reshape(q, (1, 8, 256))), [0, 2, 1]))
        return _gelu(bb, tokens, params)

    before = _module((1, 8, 16, 16), [], tokens_gelu)
    after, count = lookup_tables(before)
    assert count == 1
    inputs = _inputs((1, 8, 16, 16), [])
    np.testing.assert_array_equal(run_relax(after, *inputs), run_relax(before, *inputs))
    fused, _ = fuse(after)
    assert [gv.name_hint for gv in fused.functions if gv.name_hint != "main"] == ["lookup"]


def test_per_tensor_only_keeps_gelu_and_leaves_the_plane_norm() -> None:
    assert lookup_tables(_module((1, 8, 16, 16), [], _gelu), per_tensor_only=True)[1] == 1
    norm = _module((1, 4, 32, 32), [(1, 4, 1, 1), (1, 4, 1, 1)], _plane_norm)
    assert lookup_tables(norm, per_tensor_only=True)[1] == 0


def test_per_token_norm_over_few_channels_is_left_alone() -> None:
    """A table per token (64 x 256 entries) would be larger than the 64 x 8 input it replaces."""
    _, count = lookup_tables(_module((1, 64, 8), [(1, 64, 1), (1, 64, 1)], _plane_norm_tokens))
    assert count == 0


def _plane_norm_tokens(bb, q, params):
    mean, std = params
    return bb.emit(relax.op.divide(bb.emit(relax.op.subtract(_dq(bb, q), mean)), std))


def test_a_chain_of_two_int8_values_is_left_alone() -> None:
    def residual(bb, q, _params):
        other = bb.emit(relax.op.permute_dims(q, [0, 1, 3, 2]))  # another int8 value of the same shape
        return bb.emit(relax.op.add(_dq(bb, q), _dq(bb, other, scale=0.1)))
    _, count = lookup_tables(_module((1, 4, 16, 16), [], residual))
    assert count == 0


def test_only_the_targets_where_tables_measured_faster_use_them(bundles: dict[str, Path]) -> None:
    for name, bundle in bundles.items():
        kernels = {k["name"] for k in json.loads((bundle / "metadata.json").read_text())["kernels"]}
        assert any(k.startswith("lookup") for k in kernels) == (get_target(name).lookup_tables != "none"), name
