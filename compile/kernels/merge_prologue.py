"""Merge an injective kernel into the single-output 1x1 convolution that reads it, between FuseOps and FuseTIR.

FuseOps never fuses a producer into a convolution (only element-wise consumers after it). UCM-Net ends with
`upsample x2 -> ReLU -> quantize -> conv 1x1, 3 -> 1`: the upsampled three-channel image (int8, 192 KiB at
256x256) is stored only for the last convolution to read each of its elements once. A 1x1 convolution with one
output channel reads every input element exactly once, so computing the producer inside it costs nothing
again; the merged kernel's schedule (`compile.kernels.rules.inline_elementwise`) inlines it.

Merging is done on FuseOps' grouped Relax functions (`Primitive`), the form FuseTIR turns into one PrimFunc.
"""

from __future__ import annotations

from collections import Counter

import tvm
from tvm import relax

from compile.kernels.attrs import OpPattern


def _call_tirs(func: relax.Function) -> list[relax.Call]:
    return [b.value for blk in func.body.blocks for b in blk.bindings
            if isinstance(b.value, relax.Call) and isinstance(b.value.op, tvm.ir.Op)
            and b.value.op.name == "relax.call_tir"]


def _injective(mod: tvm.IRModule, func: relax.Function) -> bool:
    patterns = [mod[c.args[0]].attrs.get("op_pattern") for c in _call_tirs(func)]
    return bool(patterns) and all(p is not None and int(p) <= OpPattern.INJECTIVE for p in patterns)


def _single_output_1x1_conv(mod: tvm.IRModule, func: relax.Function, param: relax.Var) -> bool:
    """Does `func` start with a 1x1 conv2d of `param` with one output channel?"""
    calls = _call_tirs(func)
    if not calls or not calls[0].args[0].name_hint.startswith("conv2d"):
        return False
    args = calls[0].args[1].fields
    weight = tuple(int(d) for d in args[1].ty.shape.values) if len(args) > 1 else ()
    return args[0].same_as(param) and len(weight) == 4 and weight[0] == 1 and weight[2:] == (1, 1)


def _merged(producer: relax.Function, reader: relax.Function, param: relax.Var) -> relax.Function:
    """One primitive function: the producer's bindings, then the reader's with `param` read from them."""
    reader = reader.bind_params({param: producer.body.body})
    blocks = [relax.DataflowBlock([*producer.body.blocks[0].bindings, *reader.body.blocks[0].bindings])]
    return relax.Function([*producer.params, *reader.params], relax.SeqExpr(blocks, reader.body.body),
                          reader.ret_ty, attrs=reader.attrs)


def merge_prologue(grouped: tvm.IRModule) -> tuple[tvm.IRModule, int]:
    """Merge each injective group read only by a single-output 1x1 convolution group into it; returns the
    module and how many were merged."""
    main = grouped["main"]
    bindings = [b for blk in main.body.blocks for b in blk.bindings]
    readers = Counter(v for b in bindings for v in relax.analysis.free_vars(b.value))
    produced = {b.var: b for b in bindings}
    merged: dict[tvm.ir.GlobalVar, relax.Function] = {}
    new_args: dict[relax.Var, tuple[tvm.ir.GlobalVar, list[relax.Expr]]] = {}  # merged call -> (callee, args)
    dropped: set[relax.Var] = set()
    for b in bindings:
        call = b.value
        if not (isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.GlobalVar)):
            continue
        first = call.args[0] if call.args else None
        source = produced.get(first) if isinstance(first, relax.Var) else None
        if source is None or readers[first] != 1 or not isinstance(source.value.op, tvm.ir.GlobalVar):
            continue
        producer, reader = grouped[source.value.op], grouped[call.op]
        if not (_injective(grouped, producer) and _single_output_1x1_conv(grouped, reader, reader.params[0])):
            continue
        merged[call.op] = _merged(producer, reader, reader.params[0])
        new_args[b.var] = (call.op, [*source.value.args, *call.args[1:]])
        dropped.add(source.var)
    if not new_args:
        return grouped, 0
    # the merged functions take other parameters: new global vars (same names) typed by the block builder
    builder = relax.BlockBuilder(tvm.IRModule({gv: f for gv, f in grouped.functions.items() if gv not in merged}))
    new_gv = {old: builder.add_func(func, old.name_hint) for old, func in merged.items()}
    replace = {var: relax.Call(new_gv[op], args) for var, (op, args) in new_args.items()}
    out = builder.get()
    new_blocks = []
    for blk in main.body.blocks:
        kept = [relax.VarBinding(b.var, replace.get(b.var, b.value)) for b in blk.bindings if b.var not in dropped]
        new_blocks.append(relax.DataflowBlock(kept) if isinstance(blk, relax.DataflowBlock) else relax.BindingBlock(kept))
    out[out.get_global_var("main")] = relax.Function(main.params, relax.SeqExpr(new_blocks, main.body.body),
                                                      main.ret_ty, attrs=main.attrs)
    return relax.transform.DeadCodeElimination()(out), len(replace)
