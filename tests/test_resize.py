"""The 2x bilinear upsample legalized with integer indices: bit-identical to TOPI's, used only where it applies."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax, te, topi

from compile.kernels.resize import legalize_resize2d, upsample2x_bilinear


def _run(func: tvm.tirx.PrimFunc, x: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray:
    lib = tvm.tirx.build(func, target="llvm")
    out = tvm.runtime.tensor(np.zeros(out_shape, "float32"))
    lib["main"](tvm.runtime.tensor(x), out)
    return out.numpy()


@pytest.mark.parametrize("shape", [(1, 3, 16, 16), (1, 2, 5, 7)])
def test_upsample_equals_topi_bit_for_bit(shape: tuple[int, ...]) -> None:
    x = te.placeholder(tuple(tvm.tirx.IntImm("int64", v) for v in shape), "float32", name="x")  # as legalized
    size = (2 * shape[2], 2 * shape[3])
    ours = te.create_prim_func([x, upsample2x_bilinear(x)])
    theirs = te.create_prim_func([x, topi.image.resize2d(x, (0.0,) * 4, size, layout="NCHW", method="linear",
                                                         coordinate_transformation_mode="half_pixel")])
    data = np.random.default_rng(0).normal(0, 3, shape).astype("float32")
    out_shape = (*shape[:2], *size)
    np.testing.assert_array_equal(_run(ours, data, out_shape), _run(theirs, data, out_shape))


@pytest.mark.parametrize(("size", "mode", "ours"), [((16, 16), "half_pixel", True), ((24, 24), "half_pixel", False),
                                                    ((16, 16), "align_corners", False)])
def test_only_a_half_pixel_2x_upsample_is_rewritten(size: tuple[int, int], mode: str, ours: bool) -> None:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 3, 8, 8), "float32"))
    with bb.function("main", [x]):
        y = bb.emit(relax.op.image.resize2d(x, size, layout="NCHW", method="linear",
                                            coordinate_transformation_mode=mode))
        bb.emit_func_output(y)
    mod = relax.transform.LegalizeOps({"relax.image.resize2d": legalize_resize2d})(bb.get())
    func = next(f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc))
    assert ("floor" not in func.script()) == ours
