"""The CPU printed beside every timing, parsed from /proc/cpuinfo texts of the three architectures."""

from __future__ import annotations

from targets.cpu import host_cpu, parse_cpuinfo

XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni amx_int8
"""
RPI5 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0b

Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""
RPI4 = "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n"
BPI_F3 = "processor\t: 0\nhart\t\t: 0\nisa\t\t: rv64imafdcv_zicbom_zicboz_zicntr\nuarch\t\t: spacemit,x60\n"
VISIONFIVE2 = "processor\t: 0\nhart\t\t: 1\nisa\t\t: rv64imafdc_zicntr_zicsr\nuarch\t\t: sifive,u74-mc\n"


def test_x86_model_and_int8_features() -> None:
    cpu = parse_cpuinfo(XEON, "x86_64")
    assert cpu.model == "Intel(R) Xeon(R) Platinum 8480+"
    assert cpu.features == ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "amx_int8")
    assert cpu.describe() == ("Intel(R) Xeon(R) Platinum 8480+ (x86_64; ISA: avx2 fma avx512f avx512bw avx512_vnni "
                              "amx_int8)")


def test_arm_boards() -> None:
    assert parse_cpuinfo(RPI5, "aarch64").describe() == ("Cortex-A76 in Raspberry Pi 5 Model B Rev 1.0 "
                                                         "(aarch64; ISA: neon dotprod)")
    rpi4 = parse_cpuinfo(RPI4, "aarch64")
    assert rpi4.model == "Cortex-A72" and rpi4.features == ("neon",)


def test_riscv_vector_extension() -> None:
    assert parse_cpuinfo(BPI_F3, "riscv64").features == ("rv64imafdcv", "rvv")
    visionfive = parse_cpuinfo(VISIONFIVE2, "riscv64")
    assert visionfive.model == "sifive,u74-mc" and visionfive.features == ("rv64imafdc",)


def test_this_host_is_described() -> None:
    cpu = host_cpu()
    assert cpu.model and cpu.arch and cpu.to_dict()["features"] == list(cpu.features)
