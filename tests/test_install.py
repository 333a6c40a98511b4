"""The set-up step as on a fresh Debian 12 machine: `scripts/install_system_packages.sh` runs with a PATH that
holds only basic tools and stubs, `apt-get` and `id` replaced by stubs, and must ask for every missing package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "install_system_packages.sh"
BASIC_TOOLS = ("bash", "sed", "head", "grep", "cat", "env")
# Each tool the project runs on a fresh machine, and the Debian package the script must ask for when it is missing.
TOOL_PACKAGES = {
    "gcc": "gcc",
    "make": "make",
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
    "riscv64-linux-gnu-gcc": "gcc-riscv64-linux-gnu",
    "arm-none-eabi-gcc": "gcc-arm-none-eabi",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
}


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!{shutil.which('bash')}\n{body}\n")
    path.chmod(0o755)


QEMU_TOOLS = ("qemu-riscv64", "qemu-system-arm")  # the probes for qemu-user and qemu-system-arm


def _fresh_machine(tmp_path: Path, present: tuple[str, ...] = (), qemu_version: str | None = None,
                   uid: int = 0, newlib: bool = False,
                   qemu_tools: tuple[str, ...] = QEMU_TOOLS) -> tuple[dict[str, str], Path]:
    """Environment of a machine with only basic tools, the stubs for `present`, QEMU `qemu_tools` of
    `qemu_version`, newlib for arm-none-eabi if `newlib`, and a recording apt-get."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in BASIC_TOOLS:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (bin_dir / "python3").symlink_to(sys.executable)
    log = tmp_path / "apt-get.log"
    _stub(bin_dir, "apt-get", f'echo "$*" >> "{log}"')
    _stub(bin_dir, "id", f'if [ "$1" = -u ]; then echo {uid}; else echo root; fi')
    for tool in present:
        _stub(bin_dir, tool, "exit 0")
    for qemu in qemu_tools if qemu_version is not None else ():
        _stub(bin_dir, qemu, f'echo "{qemu} version {qemu_version} (Debian)"')
    specs = tmp_path / "rdimon.specs"
    if newlib:
        specs.write_text("")
    os_release = tmp_path / "os-release"
    os_release.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n')
    (tmp_path / "sources.list.d").mkdir()
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "UCM_OS_RELEASE": str(os_release),
           "UCM_APT_SOURCES_DIR": str(tmp_path / "sources.list.d"),
           "UCM_SSHD_PATH": str(tmp_path / "no-sshd"), "UCM_NEWLIB_SPECS": str(specs)}
    return env, log


def _run(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("bash"), str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def _apt_calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_fresh_machine_gets_every_package(tmp_path: Path) -> None:
    env, log = _fresh_machine(tmp_path)
    proc = _run(env)
    assert proc.returncode == 0, proc.stderr
    calls = _apt_calls(log)
    assert calls[0] == "update -q"
    installed = calls[1].split()
    assert installed[:3] == ["install", "-y", "-q"]
    assert {*TOOL_PACKAGES.values(), "libnewlib-arm-none-eabi"} <= set(installed[3:])
    assert calls[2] == "install -y -q -t bookworm-backports qemu-user qemu-system-arm"
    backports = (tmp_path / "sources.list.d" / "bookworm-backports.list").read_text()
    assert "bookworm-backports main" in backports


@pytest.mark.parametrize("tool", sorted(TOOL_PACKAGES))
def test_each_missing_tool_is_asked_for(tmp_path: Path, tool: str) -> None:
    present = tuple(t for t in TOOL_PACKAGES if t != tool)
    env, log = _fresh_machine(tmp_path, present=present, qemu_version="10.0.2", newlib=True)
    proc = _run(env)
    assert proc.returncode == 0, proc.stderr
    assert _apt_calls(log) == ["update -q", f"install -y -q {TOOL_PACKAGES[tool]}"]


def test_missing_newlib_is_asked_for(tmp_path: Path) -> None:
    """arm-none-eabi-gcc alone cannot link the firmware: the semihosting C library is its own package."""
    env, log = _fresh_machine(tmp_path, present=tuple(TOOL_PACKAGES), qemu_version="10.0.2")
    assert _run(env).returncode == 0
    assert _apt_calls(log) == ["update -q", "install -y -q libnewlib-arm-none-eabi"]


def test_old_qemu_is_replaced_from_backports(tmp_path: Path) -> None:
    env, log = _fresh_machine(tmp_path, present=tuple(TOOL_PACKAGES), qemu_version="7.2.0", newlib=True)
    assert _run(env).returncode == 0
    assert _apt_calls(log) == ["update -q", "install -y -q -t bookworm-backports qemu-user qemu-system-arm"]


@pytest.mark.parametrize(("tool", "package"), [("qemu-riscv64", "qemu-user"), ("qemu-system-arm", "qemu-system-arm")])
def test_each_missing_qemu_is_installed_from_backports(tmp_path: Path, tool: str, package: str) -> None:
    others = tuple(t for t in QEMU_TOOLS if t != tool)
    env, log = _fresh_machine(tmp_path, present=tuple(TOOL_PACKAGES), qemu_version="10.0.2", newlib=True,
                              qemu_tools=others)
    assert _run(env).returncode == 0
    assert _apt_calls(log) == ["update -q", f"install -y -q -t bookworm-backports {package}"]


def test_complete_machine_installs_nothing(tmp_path: Path) -> None:
    env, log = _fresh_machine(tmp_path, present=tuple(TOOL_PACKAGES), qemu_version="10.0.2", newlib=True)
    proc = _run(env)
    assert proc.returncode == 0 and _apt_calls(log) == [] and proc.stderr == ""


def test_not_root_lists_what_to_install(tmp_path: Path) -> None:
    env, log = _fresh_machine(tmp_path, uid=1000)
    proc = _run(env)
    assert proc.returncode == 0 and _apt_calls(log) == []
    assert "gcc-aarch64-linux-gnu" in proc.stderr and "libnewlib-arm-none-eabi" in proc.stderr
    assert "qemu-user qemu-system-arm (QEMU >= 8" in proc.stderr


def test_python_without_venv_module_asks_for_python3_venv(tmp_path: Path) -> None:
    env, log = _fresh_machine(tmp_path, present=tuple(TOOL_PACKAGES), qemu_version="10.0.2", newlib=True)
    bin_dir = Path(env["PATH"])
    (bin_dir / "python3").unlink()
    _stub(bin_dir, "python3", "exit 1")  # Debian's python3 without python3-venv: 'import ensurepip' fails
    assert _run(env).returncode == 0
    assert _apt_calls(log) == ["update -q", "install -y -q python3-venv"]


def test_makefile_runs_the_install_script_before_the_venv() -> None:
    """The README's two commands reach the install script first, so a fresh machine gets its packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}  # also under make
    proc = subprocess.run(["make", "--no-print-directory", "-n", "-B", "setup"], cwd=REPO, capture_output=True,
                          text=True, check=True, env=env)
    lines = proc.stdout.splitlines()
    assert lines[0] == "scripts/install_system_packages.sh"
    assert any("python3 -m venv .venv" in line for line in lines[1:])
