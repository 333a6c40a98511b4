"""The compile targets (a CPU, its triple, its cross toolchain and emulator): one table, printed by
`python -m compile --list-targets`. Boards, which name a compile target, are `targets/` at the top level."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

from compile.errors import CompileError


class UnknownTargetError(CompileError, ValueError):
    """A target name not in TARGETS; the message lists the known ones."""


class ToolchainError(CompileError, RuntimeError):
    """A cross compiler or emulator this target needs is not installed; the message names the Debian package."""


@dataclass(frozen=True)
class DotProduct:
    """An int8 dot-product instruction the int8 matrix products are tensorized with (TVM's `tensorize`, the
    intrinsics of `compile.kernels.dot_product`): each instruction adds `depth` int8 products into each of
    `lanes` int32 sums, one sum per output channel."""

    intrinsic: str  # TensorIntrin name (tvm.s_tir.tensor_intrin, or registered by compile.kernels.dot_product)
    lanes: int
    depth: int
    activations: str  # "int8", or "uint8": the instruction multiplies u8 x i8 (x86), activations get +128
    mnemonic: str  # what `objdump -d` shows for it in the kernels
    # the same instruction on two vectors, both operands per lane (the stem's Gram statistics,
    # compile.kernels.stem_gram); "" where no such intrinsic is registered
    pairs: str = ""


@dataclass(frozen=True)
class CompileTarget:
    name: str
    board: str  # the kind of board it is for, in words
    triple: str  # GCC / LLVM target triple
    llvm: dict  # TVM target for the LLVM kernel path (TVM 0.27 takes JSON dicts)
    cflags: tuple[str, ...]  # GCC flags for the bundle
    cross_prefix: str  # CROSS_COMPILE; "" for the host compiler
    compiler_package: str  # Debian package with the compiler
    qemu: tuple[str, ...] = ()  # QEMU user-mode command line that runs this target's binaries; () for the host
    kernels: str = "llvm"  # default kernel code generator: "llvm" (object code) or "c" (C source)
    # QEMU system emulation of the board this bare-metal target's firmware is linked for; () for Linux targets
    qemu_system: tuple[str, ...] = ()
    firmware: str = ""  # bare metal: the board files (startup_<firmware>.c, <firmware>.ld) in the bundle
    ram_budget: int = 0  # bare metal: default RAM_BYTES, the SRAM the firmware links into
    # SIMD register file (registers x bytes) a kernel can keep accumulators in; 0: scalar only
    vector_register_bytes: int = 0
    dot_product: DotProduct | None = None  # int8 dot-product instruction of this CPU; None: none (or not used)
    # compile.passes.lookup_tables: int8 -> int8 norm / GELU chains as tables, where they measured faster: "all"
    # (Helium has no vector float division: M55 icount 135.3 -> 130.0 M), "per_tensor", only chains with one table
    # for the whole tensor, GELU's (x86-64 AVX-512: GELU kernels 0.269 -> 0.087 ms of lookups + 0.058 ms of
    # transposes; the norms' per-channel tables, built at run time, measured slower than their vectorized
    # chains), or "none" (the Linux Arm / RISC-V targets: unmeasured, no board)
    lookup_tables: str = "none"
    # compile.kernels.resize_rows: a 2x upsample's rows split by parity into clamp-free steps of two pixels,
    # where they measured faster (x86-64: final conv 0.65 -> 0.13 ms; M55: 127.26 -> 125.70 M instructions in
    # all; the Linux Arm / RISC-V targets are unmeasured, no board)
    resize_rows: bool = False
    # compile.kernels.rules: element-wise kernels that compute on an input read with a stride (tokens -> planes)
    # vectorized with lane-by-lane loads (x86-64: two norm + residual + transpose kernels 0.14 -> 0.075 ms and
    # 0.063 -> 0.036 ms; on the M55 126.3 -> 128.9 M instructions in all; Linux Arm / RISC-V unmeasured); and
    # compile.passes.matmul_nchw's epilogues of 8 channels reading a token's channels in one step (x86-64:
    # 0.076 -> 0.041 ms; M55 125.70 -> 125.99 M)
    strided_reads: bool = False
    # compile.kernels.transpose_tiles: element-wise kernels that read int8 planes as tokens (residual additions,
    # GELU lookups, transposed copies) read them in tiles transposed in vector registers (x86-64 AVX2 on an AMD
    # EPYC, single kernels: 16-channel residual addition at 64x64 0.094 -> 0.039 ms, lookup 0.111 -> 0.055 ms;
    # runners alternating 4.03 -> 3.76 ms min; x86_64-vnni and the other targets unmeasured)
    transpose_tiles: bool = False
    # compile.passes.depthwise_float: int8 depthwise convolutions of rows of 16 or more accumulate in float32,
    # exactly, where it measured faster (x86-64 AVX-512: 8 x 128x128 0.085 -> 0.052 ms, 16 x 64x64 0.042 -> 0.028
    # ms; AVX2: 16 x 64x64 0.14 -> 0.115 ms, 8 x 128x128 and 24 x 32x32 within 10% either way; the M55 and the
    # Linux Arm / RISC-V targets keep int32, unmeasured)
    float_depthwise: bool = False
    # compile.kernels.stem: the recomputed stem conv, where no dot-product instruction computes it, accumulates
    # in float32, exactly, its padded rows copied in vectors (x86-64 AVX2: stats 2.01 -> 0.74 ms, pool 1.34 ->
    # 0.65 ms), and its statistics come from the input's Gram matrix instead (compile.kernels.stem_gram: 0.55 ->
    # 0.26 ms); the other targets keep int32, unmeasured
    float_stem: bool = False
    # compile.kernels.row_sums: per-token norm sums of 16 or more int8 channels loaded row by row and added
    # across the row (x86-64 AVX-512: 4096 x 16 0.033 -> 0.017 ms, the norms 0.99 -> 0.87 ms; others unmeasured)
    row_sums: bool = False
    notes: str = field(default="", compare=False)

    @property
    def cc(self) -> str:
        return f"{self.cross_prefix}gcc"

    @property
    def bare_metal(self) -> bool:
        """No operating system: the bundle builds firmware (startup, linker script, semihosting runner)."""
        return bool(self.firmware)

    @property
    def runner(self) -> str:
        """The program the bundle builds to run images: a Linux executable or a firmware ELF."""
        return "ucm_firmware.elf" if self.bare_metal else "ucm_runner"

    @property
    def profiled_runner(self) -> str:
        """The runner of `make profile`, every kernel call timed."""
        return "ucm_firmware_profile.elf" if self.bare_metal else "ucm_runner_profile"

    def require_compiler(self) -> str:
        path = shutil.which(self.cc)
        if path is None:
            raise ToolchainError(
                f"target {self.name}: C compiler '{self.cc}' not found; install it with "
                f"'apt-get install {self.compiler_package}' (or pass --no-build to only write the bundle)"
            )
        return path

    def require_qemu_system(self) -> list[str]:
        if shutil.which(self.qemu_system[0]) is None:
            raise ToolchainError(f"target {self.name}: emulator '{self.qemu_system[0]}' not found; install it with "
                                 f"'apt-get install {self.qemu_system[0]}' (QEMU >= 8, e.g. from bookworm-backports)")
        return list(self.qemu_system)

    def require_qemu(self) -> list[str]:
        if not self.qemu:
            return []
        if shutil.which(self.qemu[0]) is None:
            raise ToolchainError(
                f"target {self.name}: emulator '{self.qemu[0]}' not found; install it with 'apt-get install qemu-user'"
            )
        return list(self.qemu)


def _riscv(name: str, board: str, vector: bool, qemu_cpu: str, notes: str = "") -> CompileTarget:
    """A 64-bit RISC-V Linux target (lp64d ABI, as Debian's riscv64 GCC builds)."""
    isa = "rv64gcv" if vector else "rv64gc"
    return CompileTarget(
        name=name, board=board, triple="riscv64-linux-gnu",
        llvm={"kind": "llvm", "mtriple": "riscv64-linux-gnu", "mcpu": "generic-rv64",
              "mattr": ["+m", "+a", "+f", "+d", "+c", *(["+v"] if vector else [])], "mabi": "lp64d"},
        cflags=(f"-march={isa}", "-mabi=lp64d"), cross_prefix="riscv64-linux-gnu-",
        compiler_package="gcc-riscv64-linux-gnu", qemu=("qemu-riscv64", "-cpu", qemu_cpu), notes=notes,
        vector_register_bytes=32 * 32 if vector else 0,  # RVV: 32 registers of VLEN 256 bits (the boards named)
    )


def _x86(name: str, board: str, cpu: str, dot_product: DotProduct | None = None,
         zmm_loops: bool = False, registers: int = 16) -> CompileTarget:
    """An x86-64 Linux target for CPUs like `cpu` (LLVM -mcpu, GCC -march); the schedules' vectors are 16
    lanes (two AVX registers, or one AVX-512). `zmm_loops`: the loops LLVM vectorizes itself use 512-bit
    registers too (LLVM prefers 256 bits on AVX-512 Intel CPUs, for their lower clock under 512-bit code).
    `registers`: vector registers (AVX2 16, AVX-512 32), counted at 256 bits."""
    llvm = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": cpu}
    if zmm_loops:
        llvm["mattr"] = ["-prefer-256-bit"]
    return CompileTarget(
        name=name, board=board, triple="x86_64-linux-gnu", llvm=llvm, cflags=(f"-march={cpu}",),
        cross_prefix="", compiler_package="gcc", vector_register_bytes=registers * 32, dot_product=dot_product,
        resize_rows=True, strided_reads=True, transpose_tiles=True, float_depthwise=True, float_stem=True,
        row_sums=True, lookup_tables="per_tensor",
    )


TARGETS: dict[str, CompileTarget] = {
    t.name: t
    for t in (
        CompileTarget(
            name="cortex-a72",
            board="Raspberry Pi 4 (aarch64, NEON)",
            triple="aarch64-linux-gnu",
            llvm={"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72", "mattr": ["+neon"]},
            cflags=("-mcpu=cortex-a72",),
            cross_prefix="aarch64-linux-gnu-",
            compiler_package="gcc-aarch64-linux-gnu",
            qemu=("qemu-aarch64", "-cpu", "cortex-a72"),
            vector_register_bytes=32 * 16,  # NEON: 32 x 128 bits
            # no sdot: TVM's NEON intrinsic, widening multiplies (int8 x int8 -> int16) and pairwise adds
            dot_product=DotProduct("dot_4x4_i8i8s32_neon", lanes=4, depth=4, activations="int8", mnemonic="smull"),
        ),
        CompileTarget(
            name="cortex-a76",
            board="Raspberry Pi 5 (aarch64, NEON + dot product)",
            triple="aarch64-linux-gnu",
            llvm={"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76",
                  "mattr": ["+neon", "+dotprod"]},
            cflags=("-mcpu=cortex-a76",),
            cross_prefix="aarch64-linux-gnu-",
            compiler_package="gcc-aarch64-linux-gnu",
            qemu=("qemu-aarch64", "-cpu", "cortex-a76"),
            vector_register_bytes=32 * 16,
            dot_product=DotProduct("dot_4x4_i8i8s32_sdot", lanes=4, depth=4, activations="int8", mnemonic="sdot"),
        ),
        _riscv("rv64gc", "RISC-V RV64GC, e.g. SiFive U74 (VisionFive 2)", vector=False, qemu_cpu="rv64"),
        _riscv("rv64gcv", "RISC-V RV64GCV, RVV 1.0 (e.g. Banana Pi BPI-F3, VLEN 256)", vector=True,
               qemu_cpu="rv64,v=true,vlen=256,vext_spec=v1.0",
               notes="vector code comes from TVM's LLVM; Debian 12's GCC 12 does not auto-vectorize for RVV"),
        CompileTarget(
            name="cortex-m55",
            board="Arm Cortex-M55 with Helium (MVE), bare metal; Corstone-300 memory map (MPS3 AN547)",
            triple="arm-none-eabi",
            llvm={"kind": "llvm", "mtriple": "thumbv8.1m.main-none-eabi", "mcpu": "cortex-m55",
                  "mattr": ["+mve.fp"], "mfloat-abi": "hard"},
            cflags=("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"),
            cross_prefix="arm-none-eabi-",
            compiler_package="gcc-arm-none-eabi libnewlib-arm-none-eabi",
            qemu_system=("qemu-system-arm", "-M", "mps3-an547"),
            firmware="an547",
            ram_budget=4 * 2**20,  # the SSE-300's internal SRAM on the AN547
            resize_rows=True,
            vector_register_bytes=8 * 16,  # Helium: 8 x 128 bits
            lookup_tables="all",
            notes="firmware: startup, AN547 linker script and a semihosting runner; run under qemu-system-arm",
        ),
        _x86("x86_64", "this host (x86-64-v3: AVX2, FMA), for parity checks and host benchmarks", "haswell",
             DotProduct("ucm_avx2_8x2", lanes=8, depth=2, activations="int8", mnemonic="vpmaddwd")),
        # 8 output channels per vpdpbusd (256-bit): 2.6x as fast as the 512-bit form on a 16-channel matmul
        # (A/B on this project's VM), and UCM-Net's narrowest layers have 8 channels. zmm_loops: 4% faster end
        # to end on this project's VM (a Sapphire Rapids-class Xeon: amx_int8), 33 KB more code; bit-identical
        _x86("x86_64-vnni", "this host if it has AVX-512 VNNI (Intel Cascade Lake and later Xeons, AMD Zen 4)",
             "cascadelake", DotProduct("ucm_vnni_8x4", lanes=8, depth=4, activations="uint8", mnemonic="vpdpbusd",
                                        pairs="ucm_vnni_pairs_8x4"),
             zmm_loops=True, registers=32),
    )
}


def get_target(name: str) -> CompileTarget:
    try:
        return TARGETS[name]
    except KeyError:
        raise UnknownTargetError(f"unknown target '{name}'; known targets: {', '.join(TARGETS)}") from None


def format_target_table() -> str:
    rows = [("target", "board", "triple", "compiler (Debian package)", "emulator")]
    for t in TARGETS.values():
        rows.append((t.name, t.board, t.triple, f"{t.cc} ({t.compiler_package})", " ".join(t.qemu or t.qemu_system) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
