"""The host itself, and QEMU user-mode emulation on the host: commands run as local processes in a work
folder on this machine."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path, PurePosixPath

from compile.toolchains import CompileTarget
from targets.transport import BoardTimeoutError, CommandResult, Transport


class LocalTransport(Transport):
    def __init__(self, board_name: str, work_dir: Path, exec_prefix: list[str] | None = None) -> None:
        self.board_name = board_name
        self._work = work_dir.resolve()
        self._work.mkdir(parents=True, exist_ok=True)
        self._prefix = list(exec_prefix or [])

    @property
    def work_dir(self) -> PurePosixPath:
        return PurePosixPath(self._work)

    def describe(self) -> str:
        return "this host"

    def exec_prefix(self) -> list[str]:
        return list(self._prefix)

    def run(self, argv: list[str], timeout_s: float) -> CommandResult:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as e:
            raise BoardTimeoutError(f"board {self.board_name}: '{argv[0]}' ran past {timeout_s:.0f} s") from e
        except FileNotFoundError as e:
            raise BoardTimeoutError(f"board {self.board_name}: '{argv[0]}' not found") from e
        return CommandResult(proc.returncode, proc.stdout, proc.stderr)

    def put(self, local: Path, remote: PurePosixPath) -> None:
        if Path(remote) != local.resolve():
            shutil.copyfile(local, Path(remote))

    def get(self, remote: PurePosixPath, local: Path) -> None:
        if Path(remote) != local.resolve():
            shutil.copyfile(Path(remote), local)


class QemuTransport(LocalTransport):
    """An emulated board: the target's binaries run under QEMU user mode on this machine."""

    emulated = True

    def __init__(self, board_name: str, target: CompileTarget, work_dir: Path) -> None:
        super().__init__(board_name, work_dir, target.require_qemu())
        self.target = target

    def describe(self) -> str:
        return f"emulated with {' '.join(self._prefix) or 'the host CPU'} on this machine"
