"""Int8 dot-product instructions: the weight layout and bias they need, the instructions each target's kernels
really contain (read back with objdump, so a schedule change cannot silently lose them), and the x86 VNNI
bundle against the AVX2 one."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE

from bench.deploy import run_bundle_here
from compile.kernels.dot_product import fits, offset_bias, pack_weights
from compile.toolchains import get_target
from targets.cpu import host_cpu, host_target, parse_cpuinfo
from ucm.data import load_images

# target -> (instruction the int8 products must use, the kernels that must contain it, the share of them that
# must): all where TVM's tensorize put it (compile.kernels.dot_product), most where LLVM's vectorizer chooses
INSTRUCTIONS = {
    "x86_64-vnni": (r"vpdpbusd", r"matmul_nchw\d+|pointwise_conv\d+|stem\d+_(stats|pool)", 1.0),
    "x86_64": (r"vpmaddwd", r"matmul_nchw\d+|pointwise_conv\d+", 1.0),  # int8 widened to int16
    "cortex-a76": (r"sdot", r"matmul_nchw\d+|pointwise_conv\d+", 1.0),
    "cortex-a72": (r"smull2?", r"matmul_nchw\d+|pointwise_conv\d+", 1.0),  # no sdot: NEON's widening multiply, int8 -> int16
    "rv64gcv": (r"vw(mul|macc)(su)?\.v[vx]", r"fused_conv2d\d*_add", 0.7),  # LLVM's, from the rules' schedules
}


def disassembly_by_function(objdump: str, path: Path) -> dict[str, str]:
    """`objdump -d` of an object file, split into its functions: name -> their instructions."""
    text = subprocess.run([objdump, "-d", str(path)], capture_output=True, text=True, check=True).stdout
    functions, name = {}, None
    for line in text.splitlines():
        header = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if header:
            name = header.group(1)
            functions[name] = ""
        elif name is not None:
            functions[name] += line + "\n"
    return functions


@pytest.mark.parametrize("target", list(INSTRUCTIONS))
def test_int8_kernels_use_the_targets_instructions(bundles: dict[str, Path], target: str) -> None:
    mnemonic, kernels, share = INSTRUCTIONS[target]
    t = get_target(target)
    functions = disassembly_by_function(f"{t.cross_prefix}objdump", bundles[target] / "kernels.o")
    chosen = {n: body for n, body in functions.items() if re.fullmatch(rf"ucm_({kernels}).*_compute_", n)}
    assert len(chosen) >= 15, sorted(functions)
    lacking = [n for n, body in chosen.items() if not re.search(rf"\s{mnemonic}\s", body)]
    assert len(lacking) <= (1 - share) * len(chosen), f"{target}: no {mnemonic} in {lacking}"


def test_packed_weights_and_offset_bias_give_the_same_sums() -> None:
    """sum_k (x + 128) * W[k, c] over the packed layout, plus the offset bias, equals x @ W + bias; the padded
    output channels read zero weights."""
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (5, 12)).astype(np.int8)
    w = rng.integers(-128, 128, (12, 6)).astype(np.int8)
    bias = rng.integers(-1000, 1000, 6).astype(np.int32)
    dot = get_target("x86_64-vnni").dot_product
    packed = pack_weights(w, dot)
    assert packed.shape == (3, 8, 4) and not packed[:, 6:, :].any()
    unpacked = packed.transpose(0, 2, 1).reshape(12, 8)
    sums = (x.astype(np.int64) + 128) @ unpacked.astype(np.int64)
    got = sums[:, :6] + offset_bias(bias, w, dot)
    np.testing.assert_array_equal(got, x.astype(np.int64) @ w.astype(np.int64) + bias)
    sdot = get_target("cortex-a76").dot_product
    np.testing.assert_array_equal(offset_bias(bias, w, sdot), bias)  # signed x signed: no offset
    assert fits(8, dot) and not fits(4, dot) and not fits(6, dot) and not fits(8, None)


def test_host_target_is_the_fastest_the_cpu_runs() -> None:
    flags = "flags\t: fpu sse2 avx2 fma avx512f avx512bw avx512vl avx512_vnni\nmodel name\t: Xeon\n"
    assert host_target(parse_cpuinfo(flags, "x86_64")) == "x86_64-vnni"
    assert host_target(parse_cpuinfo(flags.replace(" avx512_vnni", " avx_vnni"), "x86_64")) == "x86_64"


@pytest.mark.skipif(host_target(host_cpu()) != "x86_64-vnni", reason="this CPU lacks AVX-512 VNNI")
def test_vnni_bundle_equals_the_avx2_bundle(bundles: dict[str, Path], tmp_path: Path) -> None:
    """Integer sums are exact in any order: the tensorized bundle's logits are the AVX2 bundle's, bit for bit."""
    names, images = load_images(SAMPLE, 256, 2)
    vnni = run_bundle_here(bundles["x86_64-vnni"], names, images, tmp_path / "vnni")
    avx2 = run_bundle_here(bundles["x86_64"], names, images, tmp_path / "avx2")
    np.testing.assert_array_equal(vnni.logits, avx2.logits)
    np.testing.assert_array_equal(vnni.masks, avx2.masks)
