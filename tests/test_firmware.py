"""The Cortex-M55 firmware on the MPS3 AN547 under QEMU system emulation: it matches the host build, a RAM
budget that is too small fails the link with the bytes needed, a fault is reported as a fault and a hang as
a timeout, the int8 convolutions use Helium (MVE), and the profiling firmware counts instructions."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from bench.deploy import run_bundle_here, run_on_board
from bench.profile import format_profile, kernel_group, profile_board
from compile.__main__ import main as compile_main
from compile.build import RamBudgetError, run_make
from compile.bundle import compile_bundle
from compile.config import CompileConfig
from compile.errors import CompileError
from compile.toolchains import get_target
from targets.connect import local_transport
from targets.transport import BoardTimeoutError, CommandFailedError, TransportError
from targets.transport_qemu_system import QemuSystemTransport
from ucm.data import load_images

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
M55 = get_target("cortex-m55")


def test_firmware_matches_the_host_build(bundles: dict[str, Path], tmp_path: Path) -> None:
    names, images = load_images(SAMPLE, 256, 1)
    host = run_bundle_here(bundles["x86_64"], names, images, tmp_path / "host")
    board = run_bundle_here(bundles["cortex-m55"], names, images, tmp_path / "m55")
    assert np.array_equal(board.masks, host.masks)
    np.testing.assert_allclose(board.logits, host.logits, atol=1e-3)  # integer parts exact; float in 1e-3
    meta = json.loads((bundles["cortex-m55"] / "metadata.json").read_text())
    firmware = meta["firmware"]
    assert meta["ram_bytes"]["total"] < firmware["ram"] <= firmware["ram_budget"] == M55.ram_budget
    # outside the RAM: the float logits the runner writes back, and the frame it copies into ucm_input()
    assert firmware["staging"] == 256 * 256 * 4 + 256 * 256 * 3
    assert 100_000 < firmware["flash"] < 512 * 1024  # code and weights fit the ITCM
    assert board.micros[0] > 10_000  # virtual microseconds of a 32 MHz SysTick, i.e. > 10 M instructions


def test_too_small_ram_budget_fails_the_link_with_the_bytes_needed(bundles: dict[str, Path], tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(bundles["cortex-m55"], bundle)
    meta = json.loads((bundle / "metadata.json").read_text())
    with pytest.raises(RamBudgetError) as err:
        run_make(bundle, M55, ["RAM_BYTES=524288"], meta["ram_bytes"])
    needed = int(re.search(r"needs ([\d,]+) bytes", str(err.value)).group(1).replace(",", ""))
    assert needed > 524288 > meta["ram_bytes"]["total"]  # the model fits 512 KiB; with stack and heap it does not
    assert "region SRAM" in str(err.value) and f"--ram-budget {needed}" in str(err.value)
    run_make(bundle, M55, [f"RAM_BYTES={needed}"])  # exactly what it said it needs links


def test_ram_budget_option(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(CompileError, match="only bare-metal targets"):
        compile_bundle(CompileConfig(target="x86_64", ram_budget=2**20))
    with pytest.raises(SystemExit):
        compile_main(["--target", "cortex-m55", "--ram-budget", "lots"])
    assert "512K or 2M" in capsys.readouterr().err


def _firmware(tmp_path: Path, bundle: Path, main_body: str) -> Path:
    """A firmware of the bundle's start-up code and linker script around `main_body`."""
    source = tmp_path / "main.c"
    source.write_text(f"int main(void) {{ {main_body} }}\n")
    elf = tmp_path / "fw.elf"
    subprocess.run([M55.cc, *M55.cflags, "-O1", "--specs=rdimon.specs", "-nostartfiles", "-T", str(bundle / "an547.ld"),
                    str(bundle / "startup_an547.c"), str(source), "-o", str(elf)], check=True, capture_output=True)
    return elf


def test_a_fault_is_reported_and_a_hang_times_out(bundles: dict[str, Path], tmp_path: Path) -> None:
    transport = QemuSystemTransport("an547", M55, tmp_path / "work")
    assert transport.emulated and "icount" in transport.describe()
    faulty = _firmware(tmp_path, bundles["cortex-m55"], "void (*volatile nowhere)(void) = 0; nowhere(); return 0;")
    result = transport.run(transport.program_argv(PurePosixPath(faulty), []), timeout_s=60)
    assert result.exit_status == 3 and "HardFault" in result.stdout and "pc 0x" in result.stdout
    names, images = load_images(SAMPLE, 256, 1)
    with pytest.raises(CommandFailedError, match="HardFault"):
        run_on_board(transport, faulty, names, images, tmp_path / "run", progress=False)
    hung = _firmware(tmp_path, bundles["cortex-m55"], "for (;;) {} return 0;")
    with pytest.raises(BoardTimeoutError, match="ran past 2 s"):
        transport.run(transport.program_argv(PurePosixPath(hung), []), timeout_s=2)


def test_semihosting_arguments_are_checked(tmp_path: Path) -> None:
    transport = local_transport(M55, tmp_path / "work")
    assert isinstance(transport, QemuSystemTransport)
    argv = transport.program_argv(transport.work_dir / "fw.elf", ["--out", str(transport.work_dir / "out"), "a,b.ppm"])
    config = argv[argv.index("-semihosting-config") + 1]
    assert config.endswith("arg=fw.elf,arg=--out,arg=out,arg=a,,b.ppm") and argv[-1] == "fw.elf"
    with pytest.raises(TransportError, match="white space"):
        transport.program_argv(transport.work_dir / "fw.elf", ["/elsewhere/an image.ppm"])


def _functions(disassembly: str) -> dict[str, list[str]]:
    """Instructions (mnemonic and operands) of each function in `objdump -d` output."""
    functions: dict[str, list[str]] = defaultdict(list)
    current = None
    for line in disassembly.splitlines():
        if match := re.match(r"^[0-9a-f]+ <(.+)>:$", line):
            current = match.group(1)
        elif current and len(fields := line.split("\t")) >= 3:
            functions[current].append(" ".join(fields[2:]).strip())
    return functions


def test_int8_convolutions_use_helium(bundles: dict[str, Path]) -> None:
    """Int8 conv / matmul kernels widen 8-bit (or 16-bit) values to 32-bit lanes in MVE loads (vldrb.s32,
    vldrb.u32, vldrh.s32) and multiply-accumulate on MVE vector registers: at least 90% of the model's MACs
    (a schedule change that loses it fails here)."""
    bundle = bundles["cortex-m55"]
    dis = subprocess.run([f"{M55.cross_prefix}objdump", "-d", "-m", "armv8.1-m.main", str(bundle / "kernels.o")],
                         capture_output=True, text=True, check=True).stdout
    functions = _functions(dis)
    macs: dict[str, int] = defaultdict(int)
    for kernel in json.loads((bundle / "metadata.json").read_text())["kernels"]:
        macs[kernel["name"]] += kernel["macs"]
    helium = 0
    for kernel in (k for k, m in macs.items() if m > 0):
        body = [i for name, ins in functions.items() if name.startswith(f"ucm_{kernel}_compute") for i in ins]
        widening_load = any(re.match(r"vldr[bh]\.[su](16|32)\s+q\d", i) for i in body)
        vector_mac = any(re.match(r"v(mla|mlav|mladav|mlaldav|mul)\.[is](8|16|32)\s+q\d", i) for i in body)
        helium += macs[kernel] if widening_load and vector_mac else 0
    assert helium >= 0.9 * sum(macs.values())


def test_profile_counts_instructions_per_kernel(bundles: dict[str, Path], tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(bundles["cortex-m55"], bundle)
    profile = profile_board("mps3-an547", n=1, bundle_dir=bundle, out=tmp_path / "profile")
    calls = len(json.loads((bundle / "metadata.json").read_text())["kernels"])
    assert profile.icount_shift == 0 and profile.runs == 1 and len(profile.ticks) == calls
    total = profile.per_image(sum(t for _, t in profile.ticks))
    assert 0.9 * profile.per_image(profile.runner_ticks) < total <= profile.per_image(profile.runner_ticks)
    text = format_profile(profile)
    assert "instructions (QEMU icount), not cycles" in text and "conv / matmul" in text
    assert kernel_group("fused_mean1_subtract3_divide4_multiply8_add8_quantize10") == "norms"
    assert kernel_group("fused_reshape20_multiply25_add29_resize2d_relu_add30_reshape13_transpose6").startswith("bilinear")
    assert kernel_group("fused_reshape4_transpose1_dequantize_dequantize_add7_quantize1").startswith("residual")
