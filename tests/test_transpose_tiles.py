"""compile.kernels.transpose_tiles on fused planes -> tokens kernels: the values of TVM's unscheduled kernel,
the tiles taken only where a token's channels evict each other from the L1 cache, and the byte interleaves in
the x86 code."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from compile.kernels.fusion import fuse
from compile.kernels.rules import RuleOptions, rule_schedule
from compile.kernels.transpose_tiles import TILE
from compile.passes.lookup_tables import lookup_kernel

RNG = np.random.default_rng(5)
TILES = RuleOptions(strided_reads=True, transpose_tiles=True)


def _planes_to_tokens_kernel(c: int, side: int, residual: bool) -> tvm.tirx.PrimFunc:
    """Planes [1, c, side, side] as tokens [1, side^2, c]: added to a tokens input and requantized (a
    residual addition), or only moved."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, c, side, side), "int8"))
    y = relax.Var("y", relax.TensorType((1, side * side, c), "int8"))
    scale, zero = relax.const(np.float32(0.05)), relax.const(np.int8(3))
    with bb.function("main", [x, y]):
        with bb.dataflow():
            tokens = relax.op.permute_dims(relax.op.reshape(x, (1, c, side * side)), [0, 2, 1])
            if residual:
                total = relax.op.add(relax.op.dequantize(tokens, scale, zero, axis=2),
                                     relax.op.dequantize(y, scale, zero, axis=2))
                tokens = relax.op.quantize(total, scale, zero, axis=2, out_dtype="int8")
            out = bb.emit_output(tokens)
        bb.emit_func_output(out)
    fused, _ = fuse(bb.get())
    return next(f for f in fused.functions.values() if isinstance(f, tvm.tirx.PrimFunc))


def _build(func: tvm.tirx.PrimFunc) -> tvm.runtime.Module:
    return tvm.tirx.build(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                          target={"kind": "llvm", "mcpu": "haswell"})


def _run(lib: tvm.runtime.Module, func: tvm.tirx.PrimFunc, *args: np.ndarray) -> np.ndarray:
    out = tvm.runtime.tensor(np.zeros([int(d) for d in func.params[-1].shape], "int8"))
    lib["main"](*(tvm.runtime.tensor(a) for a in args[: len(func.params) - 1]), out)
    return out.numpy()


@pytest.mark.parametrize("residual", [True, False])
def test_planes_read_as_tokens_through_transposed_tiles(residual: bool) -> None:
    """16 channels at 64x64 (planes 4 KiB apart): the kernel reads its planes through tiles transposed by
    byte interleaves (vector loads, no byte-by-byte inserts), computes on whole vectors, and gives the same
    bytes as the unscheduled kernel."""
    func = _planes_to_tokens_kernel(16, 64, residual)
    scheduled = rule_schedule(func, macs=0, options=TILES)
    script = scheduled.script()
    assert script.count("T.Shuffle") == 4 * TILE and f"T.vectorized({TILE})" in script
    x = RNG.integers(-128, 128, (1, 16, 64, 64)).astype(np.int8)
    y = RNG.integers(-128, 128, (1, 64 * 64, 16)).astype(np.int8)
    lib = _build(scheduled)
    np.testing.assert_array_equal(_run(lib, scheduled, x, y), _run(_build(func), func, x, y))
    asm = lib.inspect_source("asm")
    assert "punpcklbw" in asm and "punpckhbw" in asm and "pinsrb" not in asm


@pytest.mark.parametrize("c, side", [(8, 128), (32, 16), (16, 8)])
def test_planes_that_share_no_cache_set_are_read_in_place(c: int, side: int) -> None:
    """8 channels (as many lines as an L1 set holds), planes 256 B apart, or too few tokens for 4 KiB: left
    to the other rules (the tiles measured slower there: 8 channels at 128x128 lookups 0.095 -> 0.107 ms)."""
    func = _planes_to_tokens_kernel(c, side, residual=True)
    assert "T.Shuffle" not in rule_schedule(func, macs=0, options=TILES).script()


def test_without_the_option_nothing_is_tiled() -> None:
    func = _planes_to_tokens_kernel(16, 64, residual=True)
    assert "T.Shuffle" not in rule_schedule(func, macs=0, options=RuleOptions(strided_reads=True)).script()


def test_a_lookup_reads_through_tiles_and_stays_scalar() -> None:
    """A GELU lookup (planes -> tokens, a table read at each value): tiled like the others, its channel loop
    not vectorized (a vector of table reads would be read byte by byte)."""
    layout = (("reshape", (1, 16, 64 * 64)), ("permute_dims", (0, 2, 1)))
    func = lookup_kernel((1, 16, 64, 64), layout, (1, 1, 1, 256), "int8", "int8")
    scheduled = rule_schedule(func, macs=0, options=TILES)
    script = scheduled.script()
    assert "T.Shuffle" in script and "T.vectorized" not in script
    x = RNG.integers(-128, 128, (1, 16, 64, 64)).astype(np.int8)
    table = RNG.integers(-128, 128, (1, 1, 1, 256)).astype(np.int8)
    np.testing.assert_array_equal(_run(_build(scheduled), scheduled, x, table), _run(_build(func), func, x, table))
