"""compile.kernels.reciprocal: quantize and broadcast division as multiplication by a reciprocal."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from compile.kernels.reciprocal import legalize_divide, legalize_quantize

RNG = np.random.default_rng(5)


def _build(func: relax.Function, ours: bool):
    mod = tvm.IRModule({"main": func})
    custom = {"relax.quantize": legalize_quantize, "relax.divide": legalize_divide} if ours else {}
    mod = relax.transform.LegalizeOps(custom)(mod)
    return relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())


def _quantize(scale: float) -> relax.Function:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4, 256), "float32"))
    with bb.function("main", [x]):
        bb.emit_func_output(bb.emit(relax.op.quantize(x, relax.const(np.float32(scale)), relax.const(np.int8(3)),
                                                      axis=1, out_dtype="int8")))
    return bb.get()["main"]


def _near_half_steps(scale: np.float32) -> np.ndarray:
    """Inputs within 2 ulp of half-way between two quantization levels (where x / s and x * (1 / s) can round
    apart), as [4, 256]."""
    x = ((np.arange(-128, 128) + 0.5) * scale).astype(np.float32)
    up, down = x.copy(), x.copy()
    for _ in range(1, 3):
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(-np.inf))
    return np.stack([x, np.nextafter(x, np.float32(np.inf)), up, down]).astype(np.float32)


@pytest.mark.parametrize("scale", [0.25, 0.0170011])
def test_quantize_by_reciprocal(scale: float) -> None:
    """x * (1 / s), rounded: exactly TVM's (dividing) quantize for a power-of-two scale; elsewhere at most one
    level apart, and apart somewhere near half-way points."""
    x = _near_half_steps(np.float32(scale))
    theirs = _build(_quantize(scale), ours=False)["main"](tvm.runtime.tensor(x)).numpy().astype(int)
    ours = _build(_quantize(scale), ours=True)["main"](tvm.runtime.tensor(x)).numpy().astype(int)
    np.testing.assert_array_equal(ours, np.clip(np.round(x * (np.float32(1) / np.float32(scale))) + 3, -128, 127))
    assert np.abs(ours - theirs).max() <= 1
    assert (ours != theirs).any() == (scale != 0.25)


@pytest.mark.parametrize("y_shape", [(1, 8, 1), (1, 8, 16)])
def test_only_a_broadcast_divisor_is_inverted(y_shape: tuple[int, ...]) -> None:
    bb = relax.BlockBuilder()
    x, y = relax.Var("x", relax.TensorType((1, 8, 16), "float32")), relax.Var("y", relax.TensorType(y_shape, "float32"))
    with bb.function("main", [x, y]):
        bb.emit_func_output(bb.emit(relax.op.divide(x, y)))
    a = RNG.standard_normal((1, 8, 16)).astype(np.float32)
    b = (RNG.random(y_shape) + 0.5).astype(np.float32)
    out = _build(bb.get()["main"], ours=True)["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b)).numpy()
    expected = a * (np.float32(1) / b) if y_shape[-1] == 1 else a / b
    np.testing.assert_array_equal(out, expected)


def test_a_scalar_is_quantized() -> None:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((), "float32"))
    with bb.function("main", [x]):
        bb.emit_func_output(bb.emit(relax.op.quantize(x, relax.const(np.float32(0.5)), relax.const(np.int8(0)),
                                                      axis=-1, out_dtype="int8")))
    out = _build(bb.get()["main"], ours=True)["main"](tvm.runtime.tensor(np.array(3.2, np.float32))).numpy()
    assert int(out) == 6
