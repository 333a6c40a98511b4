"""What the Relax rewrites share."""

from __future__ import annotations

import tvm
from tvm import relax


def with_new_main(builder: relax.BlockBuilder, main: relax.Function) -> tvm.IRModule:
    """The module a rewrite built: `builder` (made from the original module, holding the kernels the rewrite
    added) with `main` replaced by the rewritten one."""
    out = builder.get()
    out[out.get_global_var("main")] = main
    return relax.transform.Normalize()(out)
