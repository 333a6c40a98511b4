"""The lowered Relax `main` as a flat execution graph: tensors and the kernel calls that read and write them.

After `compile.kernels.fusion.fuse`, UCM-Net's `main` is one dataflow block of `R.call_tir(kernel, args)` and
`R.reshape` (a view) bindings. This module turns it into plain Python data that the memory planner and the
C emitter work on; anything else in `main` is reported by name, since the static executor cannot run it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

from compile.errors import CompileError


class UnsupportedGraphError(CompileError, ValueError):
    """A construct in the lowered Relax main the static C executor cannot run."""


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    kind: str  # "input" | "output" | "const" | "temp" | "view"
    base: int | None = None  # for a view: the tensor whose memory it shares
    value: np.ndarray | None = field(default=None, repr=False)  # for a const

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass
class KernelCall:
    kernel: str  # PrimFunc name in the fused module
    inputs: list[int]
    output: int


@dataclass
class ExecGraph:
    tensors: list[Tensor]
    calls: list[KernelCall]
    input: int
    output: int  # the uint8 mask
    logits_kernel: str | None = None  # computes the logits instead of the mask, from the last call's inputs
    logits: int | None = None  # the float logits it writes (ucm_run_logits only), alive at the last call

    def image_size(self) -> tuple[int, int]:
        """(height, width) of the image, read from the [1, 1, H, W] mask."""
        height, width = self.tensors[self.output].shape[2:]
        return height, width

    @property
    def image_in_arena(self) -> bool:
        """Does the model read the caller's uint8 pixels in its own input tensor (`ucm_input()`;
        compile.passes.uint8_input)? Else it takes floats, converted from the caller's buffer."""
        return self.tensors[self.input].dtype == "uint8"

    def root(self, index: int) -> int:
        """The tensor that owns the memory of `index` (follows views)."""
        while self.tensors[index].base is not None:
            index = self.tensors[index].base
        return index


def _tensor_type(var: relax.Expr, what: str) -> tuple[tuple[int, ...], str]:
    ty = var.ty
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        raise UnsupportedGraphError(f"{what}: expected a tensor with a static shape, got {ty}")
    try:
        shape = tuple(int(d) for d in ty.shape.values)
    except TypeError:
        raise UnsupportedGraphError(f"{what}: symbolic shape {ty.shape}; export the ONNX with static shapes") from None
    return shape, str(ty.dtype)


def extract_graph(mod: tvm.IRModule, logits_kernel: str | None = None) -> ExecGraph:
    main = mod["main"]
    if len(main.params) != 1:
        raise UnsupportedGraphError(f"main takes {len(main.params)} inputs; the executor supports one image input")
    tensors: list[Tensor] = []
    by_var: dict[relax.Var, int] = {}
    consts: dict[tvm.ir.expr.Constant, int] = {}  # TVM objects hash by identity: one tensor per constant

    def add(name: str, shape: tuple[int, ...], dtype: str, kind: str, **kw) -> int:
        tensors.append(Tensor(len(tensors), name, shape, dtype, kind, **kw))
        return len(tensors) - 1

    param = main.params[0]
    by_var[param] = add(param.name, *_tensor_type(param, "model input"), "input")

    def arg_index(arg: relax.Expr, where: str) -> int:
        if isinstance(arg, relax.Var):
            if arg not in by_var:
                raise UnsupportedGraphError(f"{where}: argument {arg.name} is not a tensor computed in main")
            return by_var[arg]
        if isinstance(arg, tvm.ir.expr.Constant):
            if arg not in consts:
                value = arg.value.numpy()
                consts[arg] = add(f"const{len(consts)}", tuple(value.shape), str(value.dtype), "const", value=value)
            return consts[arg]
        raise UnsupportedGraphError(f"{where}: argument of type {type(arg).__name__} is not supported")

    calls: list[KernelCall] = []
    for block in main.body.blocks:
        for binding in block.bindings:
            var, value = binding.var, binding.value
            name = var.name
            if not isinstance(value, relax.Call) or not isinstance(value.op, tvm.ir.Op):
                raise UnsupportedGraphError(f"binding '{name}': {type(value).__name__} is not a call; cannot run it")
            op = value.op.name
            if op == "relax.call_tir":
                kernel = value.args[0].name_hint
                if len(value.args) > 2:
                    raise UnsupportedGraphError(f"binding '{name}': kernel {kernel} takes symbolic shape arguments")
                inputs = [arg_index(a, f"kernel {kernel}") for a in value.args[1].fields]
                out = add(name, *_tensor_type(var, f"output of kernel {kernel}"), "temp")
                calls.append(KernelCall(kernel, inputs, out))
                by_var[var] = out
            elif op == "relax.reshape":
                src = arg_index(value.args[0], f"reshape '{name}'")
                shape, dtype = _tensor_type(var, f"reshape '{name}'")
                by_var[var] = add(name, shape, dtype, "view", base=src)
            else:
                raise UnsupportedGraphError(
                    f"binding '{name}': Relax op {op} was not lowered to a TIR kernel; the static executor "
                    "runs only call_tir and reshape"
                )
    out_var = main.body.body
    if not isinstance(out_var, relax.Var) or out_var not in by_var:
        raise UnsupportedGraphError("main must return one tensor (the logits)")
    output = by_var[out_var]
    if tensors[output].kind != "view":
        tensors[output].kind = "output"
    logits = None
    if logits_kernel is not None:
        logits = add("logits", tensors[output].shape, "float32", "temp")
    return ExecGraph(tensors, calls, by_var[param], output, logits_kernel, logits)
