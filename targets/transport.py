"""One interface to a board: upload files, run a command (an argument list) with a timeout, download files."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from targets.errors import TargetError
from ucm.files import sha256_file


class TransportError(TargetError, RuntimeError):
    """The board could not be reached or a transfer failed; the message names the board and the fix."""


class BoardTimeoutError(TransportError):
    """A connection or a command on the board ran past its timeout."""


class CommandFailedError(TransportError):
    """A command on the board exited non-zero."""


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str


class Transport(ABC):
    """A board reached some way. Paths on the board are POSIX paths under `work_dir`."""

    emulated: bool = False
    board_name: str = "board"
    icount_shift: int | None = None  # QEMU -icount shift where the board's clock counts instructions

    @property
    @abstractmethod
    def work_dir(self) -> PurePosixPath: ...

    @abstractmethod
    def describe(self) -> str:
        """How the board is reached, in words (printed in every report)."""

    @abstractmethod
    def run(self, argv: list[str], timeout_s: float) -> CommandResult:
        """Run a command given as an argument list (never a shell string)."""

    @abstractmethod
    def put(self, local: Path, remote: PurePosixPath) -> None: ...

    @abstractmethod
    def get(self, remote: PurePosixPath, local: Path) -> None: ...

    def exec_prefix(self) -> list[str]:
        """What goes before a target binary's path to run it on this board (e.g. an emulator)."""
        return []

    def program_argv(self, program: PurePosixPath, args: list[str]) -> list[str]:
        """The command line that runs a program (already on the board) with its arguments."""
        return [*self.exec_prefix(), str(program), *args]

    def close(self) -> None:
        """Release the connection, if any."""

    def check(self, argv: list[str], timeout_s: float) -> CommandResult:
        result = self.run(argv, timeout_s)
        if result.exit_status != 0:
            raise CommandFailedError(
                f"board {self.board_name}: '{' '.join(argv)}' exited with {result.exit_status}: "
                f"{(result.stderr or result.stdout).strip()[-1500:]}"
            )
        return result

    def upload(self, files: list[tuple[Path, PurePosixPath]], executable: bool = False, timeout_s: float = 120) -> None:
        """Copy files to the board and verify them there (size and SHA-256 on both ends, one command each
        for the whole batch)."""
        for local, remote in files:
            self.put(local, remote)
        remotes = [str(remote) for _, remote in files]
        # One "DIGEST  NAME" line per file; the name may hold spaces, and a name with a backslash or newline
        # makes sha256sum escape it and start the line with a backslash.
        listing = self.check(["sha256sum", *remotes], timeout_s).stdout.splitlines()
        digests = [line.removeprefix("\\")[:64] for line in listing]
        sizes = self.check(["stat", "-c", "%s", *remotes], timeout_s).stdout.splitlines()
        for (local, remote), digest, size in zip(files, digests, sizes, strict=True):
            if int(size) != local.stat().st_size or digest != sha256_file(local):
                raise TransportError(f"board {self.board_name}: upload of {local.name} to {remote} is corrupt "
                                     f"(size {size} vs {local.stat().st_size}, or SHA-256 differs); retry")
        if executable:
            self.check(["chmod", "755", *remotes], timeout_s)
