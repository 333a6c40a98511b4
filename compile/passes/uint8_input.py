"""Take the image as the uint8 bytes the board has, not as floats in [0, 1].

The QCDQ graph's input is `image` float32 [1, 3, H, W] in [0, 1], and its first operation quantizes it back to
uint8 with scale 1/255 and zero point 0 (`quantize.model.PixelQuant`). For a pixel p, round((p / 255) / (1 / 255))
is p itself, so that quantize is the identity on the caller's bytes. When it is the input's only reader, `main`
takes the bytes as the caller has them, uint8 [1, H, W, 3] (HWC), and transposes them to [1, 3, H, W]: the
executor needs no float copy of the image (a quarter of the memory), the caller can write the image straight
into the arena (`ucm_input()`), and the quantize kernel becomes an int8 transpose.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from compile.passes.common import quantizer


def _pixel_quantize(call: relax.Expr, param: relax.Var) -> bool:
    q = quantizer(call)
    return (q is not None and call.args[0].same_as(param) and q.dtype == "uint8" and q.zero_point == 0
            and np.float32(q.scale) == np.float32(1 / 255))


@relax.expr_functor.mutator
class _PixelsInstead(relax.PyExprMutator):
    """Replaces one binding (the pixel quantize) by the transpose of the HWC `replacement` to CHW."""

    def __init__(self, mod: tvm.IRModule, dropped: relax.Var, replacement: relax.Var) -> None:
        super().__init__(mod)
        self.dropped, self.replacement = dropped, replacement

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        if binding.var.same_as(self.dropped):
            chw = self.builder_.emit(relax.op.permute_dims(self.replacement, [0, 3, 1, 2]), "pixels")
            self.set_var_remap(binding.var, chw)
        else:
            super().visit_var_binding_(binding)


def uint8_input(mod: tvm.IRModule) -> tuple[tvm.IRModule, bool]:
    """`main` with a uint8 HWC image parameter where its only reader is the pixel quantize; returns the module
    and whether it changed."""
    main = mod["main"]
    if len(main.params) != 1 or len(main.body.blocks) != 1:
        return mod, False
    param = main.params[0]
    bindings = list(main.body.blocks[0].bindings)
    readers = [b for b in bindings if param in relax.analysis.free_vars(b.value)]
    if len(readers) != 1 or not _pixel_quantize(readers[0].value, param):
        return mod, False
    n, c, h, w = param.ty.shape.values
    pixels = relax.Var(param.name, relax.TensorType([n, h, w, c], "uint8"))
    body = _PixelsInstead(mod, readers[0].var, pixels).visit_expr(main.body)
    main = relax.Function([pixels], body, main.ret_ty, attrs=main.attrs)
    out = tvm.IRModule(dict(mod.functions))
    out[out.get_global_var("main")] = main
    return relax.transform.DeadCodeElimination()(out), True
