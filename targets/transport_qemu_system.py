"""A microcontroller board emulated by QEMU system emulation (`qemu-system-arm -M mps3-an547`): the firmware
runs on the emulated board and reads and writes this machine's files through Arm semihosting, so the work
folder is the board's file system. With `-icount shift=0` the board's clock advances one nanosecond per
executed instruction: its timings are deterministic instruction counts, not the speed of a real board."""

from __future__ import annotations

import subprocess
from pathlib import Path, PurePosixPath

from compile.toolchains import CompileTarget
from targets.transport import BoardTimeoutError, CommandResult, TransportError
from targets.transport_local import LocalTransport

ICOUNT_SHIFT = 0  # 2**shift nanoseconds of virtual time per instruction


def icount_instructions(virtual_seconds: float, shift: int) -> float:
    """Instructions executed in `virtual_seconds` of QEMU -icount time (2**shift ns each)."""
    return virtual_seconds * 1e9 / 2**shift


class QemuSystemTransport(LocalTransport):
    emulated = True
    icount_shift: int | None = ICOUNT_SHIFT

    def __init__(self, board_name: str, target: CompileTarget, work_dir: Path) -> None:
        super().__init__(board_name, work_dir)
        self.target = target
        self._qemu = target.require_qemu_system()

    def describe(self) -> str:
        return (f"emulated with {' '.join(self._qemu)} -icount shift={ICOUNT_SHIFT} on this machine "
                "(time counts instructions)")

    def program_argv(self, program: PurePosixPath, args: list[str]) -> list[str]:
        """QEMU booting the firmware, with its arguments on the semihosting command line. QEMU runs in the
        work folder and paths under it are passed relative to it."""
        words = [program.name, *(self._relative(a) for a in args)]
        for word in words:
            if not word or any(c.isspace() for c in word):
                raise TransportError(
                    f"board {self.board_name}: argument '{word}' is empty or holds white space, which the "
                    "semihosting command line cannot carry; rename the file or use a folder without spaces")
        config = ",".join(["enable=on", "target=native", *(f"arg={w.replace(',', ',,')}" for w in words)])
        return [*self._qemu, "-nographic", "-monitor", "none", "-serial", "null", "-icount", f"shift={ICOUNT_SHIFT}",
                "-semihosting-config", config, "-kernel", self._relative(str(program))]

    def _relative(self, arg: str) -> str:
        path = PurePosixPath(arg)
        return str(path.relative_to(self.work_dir)) if path.is_relative_to(self.work_dir) else arg

    def run(self, argv: list[str], timeout_s: float) -> CommandResult:
        """Commands run on this machine in the work folder; QEMU's console (the firmware's stdout and stderr
        through semihosting) is returned as both."""
        if argv[:1] != self._qemu[:1]:
            return super().run(argv, timeout_s)
        try:
            proc = subprocess.run(argv, cwd=self._work, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as e:
            raise BoardTimeoutError(
                f"board {self.board_name}: the firmware ran past {timeout_s:.0f} s under {self._qemu[0]} (hung, or "
                "more images than the board's command_timeout_s allows); QEMU was stopped") from e
        console = (proc.stdout or "") + (proc.stderr or "")
        return CommandResult(proc.returncode, console, console)
