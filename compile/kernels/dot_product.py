"""Int8 dot-product instructions as TVM tensor intrinsics, and the weight layout they read.

An instruction adds `depth` int8 products into each of `lanes` int32 sums (one per output channel): its
description is `C[i] += A[k] * B[i, k]` over a (lanes, depth) block of weights, matched by TVM's `tensorize`.
Arm's `sdot` and, for cores without it, NEON's widening multiply `smull` with pairwise adds are TVM's own
intrinsics (`tvm.s_tir.tensor_intrin.arm_cpu`). TVM's x86 VNNI intrinsic calls
`llvm.x86.avx512.vpdpbusd.512` with the operand types of older LLVMs (the LLVM inside TVM 0.27 rejects
them), and only in its 512-bit form: `ucm_vnni_<lanes>x4` below is the same description with today's
operand types, for 256- and 512-bit vectors; `ucm_vnni_pairs_<lanes>x4` is the instruction on two vectors,
each lane's 4 bytes of both operands its own (the stem's Gram statistics, `compile.kernels.stem_gram`).
x86-64 CPUs without VNNI (AVX2) get `ucm_avx2_8x2`: `vpmaddwd` on the int8 values widened to int16, two
products per int32 sum, exact (x86_64 on an AMD EPYC, single-kernel A/B against LLVM's own vectorization:
16384 x 16 -> 16 tokens 0.125 -> 0.051 ms, 1024 x 64 -> 64 0.075 -> 0.012 ms).
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import numpy as np
import tvm
import tvm.s_tir
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from compile.toolchains import DotProduct

ACTIVATION_OFFSET = 128  # int8 + 128 = uint8, for instructions that multiply u8 x i8


def _import_cpu_intrinsics() -> None:
    """Register TVM's Arm intrinsics (`dot_4x4_i8i8s32_sdot` / `_neon`) and x86 ones (`dot_16x4_vnni`, which
    MetaSchedule's x86 rules ask for on a VNNI target: `python -m compile.tune --target x86_64-vnni`) without
    running the package `tvm.s_tir.tensor_intrin`'s `__init__`, which registers every CUDA and ROCm intrinsic
    too: 30 to 40 s of TVMScript parsing in each process that compiles (measured on this project's VM), for
    nothing a CPU uses."""
    package = "tvm.s_tir.tensor_intrin"
    if package not in sys.modules:
        stub = types.ModuleType(package)
        stub.__path__ = [str(Path(tvm.s_tir.__file__).parent / "tensor_intrin")]
        sys.modules[package] = stub
    for module in ("arm_cpu", "x86"):
        importlib.import_module(f"{package}.{module}")


_import_cpu_intrinsics()


def _description(lanes: int, depth: int, activations: str) -> tvm.tirx.PrimFunc:
    """What a dot-product instruction computes: C[i] += A[k] * B[i, k] over `lanes` x `depth`."""

    @T.prim_func(s_tir=True)
    def desc(A: T.Buffer((depth,), activations, offset_factor=1), B: T.Buffer((lanes, depth), "int8", offset_factor=1),
             C: T.Buffer((lanes,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:depth], B[0:lanes, 0:depth])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, depth):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    return desc


def _vnni_intrinsic(lanes: int) -> tuple[tvm.tirx.PrimFunc, tvm.tirx.PrimFunc]:
    bytes_ = 4 * lanes

    @T.prim_func(s_tir=True)
    def impl(A: T.Buffer((4,), "uint8", offset_factor=1), B: T.Buffer((lanes, 4), "int8", offset_factor=1),
             C: T.Buffer((lanes,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            a_word = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")  # the 4 activations, broadcast
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(f"llvm.x86.avx512.vpdpbusd.{8 * bytes_}"),
                C.vload([0], dtype=f"int32x{lanes}"),
                T.reinterpret(T.broadcast(a_word, lanes), dtype=f"int8x{bytes_}"),
                B.vload([0, 0], dtype=f"int8x{bytes_}"),
                dtype=f"int32x{lanes}")

    return _description(lanes, 4, "uint8"), impl


def _vnni_pairs_intrinsic(lanes: int) -> tuple[tvm.tirx.PrimFunc, tvm.tirx.PrimFunc]:
    """`vpdpbusd` on two vectors: C[i] += sum_k A[4 i + k] * B[4 i + k], uint8 x int8, both operands per lane."""
    bytes_ = 4 * lanes

    @T.prim_func(s_tir=True)
    def desc(A: T.Buffer((bytes_,), "uint8", offset_factor=1), B: T.Buffer((bytes_,), "int8", offset_factor=1),
             C: T.Buffer((lanes,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:bytes_], B[0:bytes_])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vi * 4 + vk], "int32") * T.cast(B[vi * 4 + vk], "int32")

    @T.prim_func(s_tir=True)
    def impl(A: T.Buffer((bytes_,), "uint8", offset_factor=1), B: T.Buffer((bytes_,), "int8", offset_factor=1),
             C: T.Buffer((lanes,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:bytes_], B[0:bytes_])
            T.writes(C[0:lanes])
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(f"llvm.x86.avx512.vpdpbusd.{8 * bytes_}"),
                C.vload([0], dtype=f"int32x{lanes}"),
                T.reinterpret(A.vload([0], dtype=f"uint8x{bytes_}"), dtype=f"int8x{bytes_}"),
                B.vload([0], dtype=f"int8x{bytes_}"),
                dtype=f"int32x{lanes}")

    return desc, impl


for _lanes in (8, 16):
    TensorIntrin.register(f"ucm_vnni_{_lanes}x4", *_vnni_intrinsic(_lanes), override=True)
    TensorIntrin.register(f"ucm_vnni_pairs_{_lanes}x4", *_vnni_pairs_intrinsic(_lanes), override=True)


def _avx2_intrinsic() -> tuple[tvm.tirx.PrimFunc, tvm.tirx.PrimFunc]:
    """AVX2's `vpmaddwd` on int8 widened to int16: 8 int32 sums, each of 2 products (exact: no saturation)."""

    @T.prim_func(s_tir=True)
    def impl(A: T.Buffer((2,), "int8", offset_factor=1), B: T.Buffer((8, 2), "int8", offset_factor=1),
             C: T.Buffer((8,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:8], A[0:2], B[0:8, 0:2])
            T.writes(C[0:8])
            a_pair = T.reinterpret(T.Cast("int16x2", A.vload([0], "int8x2")), dtype="int32")  # broadcast below
            C[T.ramp(T.int32(0), 1, 8)] = C.vload([0], dtype="int32x8") + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                T.Cast("int16x16", B.vload([0, 0], dtype="int8x16")),
                T.reinterpret(T.broadcast(a_pair, 8), dtype="int16x16"),
                dtype="int32x8")

    return _description(8, 2, "int8"), impl


TensorIntrin.register("ucm_avx2_8x2", *_avx2_intrinsic(), override=True)


def padded_channels(channels: int, dot: DotProduct) -> int:
    """Output channels rounded up to whole instructions (the extra sums read zero weights)."""
    return -(-channels // dot.lanes) * dot.lanes


def pack_weights(w: np.ndarray, dot: DotProduct) -> np.ndarray:
    """[K, C] int8 weights as [K / depth, C padded, depth]: each instruction's (lanes, depth) block contiguous."""
    k, c = w.shape
    packed = np.zeros((k // dot.depth, padded_channels(c, dot), dot.depth), np.int8)
    packed[:, :c, :] = w.reshape(k // dot.depth, dot.depth, c).transpose(0, 2, 1)
    return packed


def offset_bias(bias: np.ndarray, w: np.ndarray, dot: DotProduct) -> np.ndarray:
    """The bias that undoes the activations' +128 (for u8 x i8 instructions): sum_k (x + 128) w = sum_k x w +
    128 sum_k w, so each output channel's bias loses 128 times its weight sum."""
    if dot.activations != "uint8":
        return bias.astype(np.int32)
    return (bias.astype(np.int64) - ACTIVATION_OFFSET * w.astype(np.int64).sum(axis=0)).astype(np.int32)


def fits(c_in: int, dot: DotProduct | None) -> bool:
    """Can a product over `c_in` inputs be tensorized with `dot`: whole instructions along the reduction, and
    at least two of them (a loop of one iteration is dropped by `compute_at`, and the schedules look for it)?"""
    return dot is not None and c_in % dot.depth == 0 and c_in >= 2 * dot.depth
