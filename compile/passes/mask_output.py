"""The model's result as the mask a board keeps, computed in the last kernel: logits are never stored for it.

`main` returns float logits [1, 1, H, W]; a caller of `ucm_run` wants only the mask, sigmoid(logit) > 0.5, that
is logit > 0, as 0 / 255 bytes. Appending `(logits > 0) * 255` as uint8 to `main` lets fusion put the threshold
in the epilogue of the kernel that computes the logits, so the 4-bytes-a-pixel logits exist only in registers.
`ucm_run_logits` runs the same last kernel without the threshold (compiled from `main` before this pass),
writing into the caller's buffer.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax


def mask_output(mod: tvm.IRModule) -> tvm.IRModule:
    """`main` returning the uint8 mask (0 / 255) instead of the float logits."""
    main = mod["main"]
    *blocks, last = main.body.blocks
    *computed, result = last.bindings
    if not result.var.same_as(main.body.body):
        raise ValueError("main must return the variable its last binding computes (the logits)")
    logits = relax.DataflowVar(result.var.name, result.var.ty)  # no longer an output: fusion may keep it in registers
    above = relax.DataflowVar("above", relax.TensorType(main.ret_ty.shape, "uint8"))
    mask = relax.Var("mask", relax.TensorType(main.ret_ty.shape, "uint8"))
    bindings = [*computed, relax.VarBinding(logits, result.value),
                relax.VarBinding(above, relax.op.astype(relax.op.greater(logits, relax.const(np.float32(0))), "uint8")),
                relax.VarBinding(mask, relax.op.multiply(above, relax.const(np.uint8(255))))]
    body = relax.SeqExpr([*blocks, relax.DataflowBlock(bindings)], mask)
    out = tvm.IRModule(dict(mod.functions))
    out[out.get_global_var("main")] = relax.Function(main.params, body, mask.ty, attrs=main.attrs)
    return relax.transform.Normalize()(out)
