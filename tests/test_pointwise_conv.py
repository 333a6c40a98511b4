"""compile.passes.pointwise_conv: an int8 1x1 convolution (stride 1 or 2) with its quantize becomes one
channel-matmul kernel reading the channel-first input, tensorized where the target has a dot-product
instruction, with the same int8 output; what does not fit is left alone."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from compile.kernels.attrs import is_tensorized
from compile.passes.pointwise_conv import pointwise_conv
from compile.toolchains import get_target
from targets.cpu import host_cpu, host_target

RNG = np.random.default_rng(7)
VNNI = get_target("x86_64-vnni")


def _conv(c_in: int, c_out: int, size: int, stride: int = 1, kernel: int = 1) -> tvm.IRModule:
    """int8 x -> quantize(float(conv2d(x, W) + b) * m), as compile.passes.lower_int8 writes it."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, c_in, size, size), "int8"))
    w = relax.const(RNG.integers(-128, 128, (c_out, c_in, kernel, kernel)).astype(np.int8))
    b = relax.const(RNG.integers(-5000, 5000, (1, c_out, 1, 1)).astype(np.int32))
    m = relax.const(RNG.uniform(1e-4, 1e-3, (1, c_out, 1, 1)).astype(np.float32))
    with bb.function("main", [x]):
        with bb.dataflow():
            conv = bb.emit(relax.op.nn.conv2d(x, w, strides=stride, padding=kernel // 2, out_dtype="int32"))
            y = bb.emit(relax.op.multiply(bb.emit(relax.op.astype(bb.emit(relax.op.add(conv, b)), "float32")), m))
            q = bb.emit(relax.op.quantize(y, relax.const(np.float32(0.05)), relax.const(np.int8(1)), axis=1))
            out = bb.emit_output(q)
        bb.emit_func_output(out)
    return bb.get()


def _run(mod: tvm.IRModule, x: np.ndarray, target: str) -> np.ndarray:
    mod = tvm.IRModule({gv: f.with_attr("global_symbol", gv.name_hint) if isinstance(f, tvm.tirx.PrimFunc) else f
                        for gv, f in mod.functions.items()})
    exe = tvm.compile(mod, target=tvm.target.Target(get_target(target).llvm))
    return relax.VirtualMachine(exe, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def _runs_here(target: str) -> bool:
    cpu = host_cpu()
    return host_target(cpu) == target or (target == "x86_64" and {"avx2", "fma"} <= set(cpu.features))


@pytest.mark.parametrize(("target", "stride"), [("x86_64-vnni", 1), ("x86_64-vnni", 2), ("x86_64", 2)])
def test_1x1_conv_becomes_a_tensorized_channel_matmul(target: str, stride: int) -> None:
    """x86-64 AVX-512 VNNI (vpdpbusd, uint8 x int8) and AVX2 (vpmaddwd on int8 widened to int16)."""
    before = _conv(8, 16, 12, stride)
    after, count = pointwise_conv(before, get_target(target).dot_product)
    assert count == 1
    kernels = [f for f in after.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    assert len(kernels) == 1 and is_tensorized(kernels[0])
    if stride == 1:
        return  # run once (a build of both modules), at stride 2
    if not _runs_here(target):
        pytest.skip(f"this CPU cannot run {target}'s tensorized kernel")
    x = RNG.integers(-128, 128, (1, 8, 12, 12)).astype(np.int8)
    x[0, :2, 0, 0] = -128  # a pair of -128 x -128 products: 32,768 in vpmaddwd's int32 sum
    got, want = _run(after, x, target), _run(before, x, target)
    assert got.shape == want.shape == (1, 16, 12 // stride, 12 // stride)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("c_in", "c_out", "kernel", "dot"), [
    (8, 16, 3, VNNI.dot_product),  # not 1x1
    (4, 16, 1, VNNI.dot_product),  # one instruction deep
    (8, 3, 1, VNNI.dot_product),  # 3 output channels: not whole instructions
    (8, 16, 1, None),  # no dot-product instruction on the target
])
def test_what_does_not_fit_is_left_alone(c_in: int, c_out: int, kernel: int, dot) -> None:
    _, count = pointwise_conv(_conv(c_in, c_out, 8, kernel=kernel), dot)
    assert count == 0
