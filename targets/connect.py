"""From a board name (or TOML file) and the user's options to a connected transport: SSH to a real board,
QEMU (user mode for Linux boards, system emulation for microcontrollers) when the board has no host or
`--emulate` is given, or this machine."""

from __future__ import annotations

from pathlib import Path

from compile.toolchains import CompileTarget, get_target
from targets.board import BOARDS_DIR, Board, load_board
from targets.transport import Transport
from targets.transport_local import LocalTransport, QemuTransport
from targets.transport_qemu_system import QemuSystemTransport
from targets.transport_ssh import SSHTransport


def resolve_board(name: str, boards_dir: Path = BOARDS_DIR, host: str | None = None,
                  emulate: bool = False) -> tuple[Board, bool]:
    """The board, with `host` (USER@HOST[:PORT]) applied, and whether it is emulated."""
    board = load_board(name, boards_dir)
    if host:
        board = board.with_host(host)
    emulated = emulate or board.transport == "qemu" or (board.transport == "ssh" and not board.has_host)
    return board, emulated


def make_transport(board: Board, emulated: bool, work: Path, trust_new_host: bool) -> Transport:
    if emulated:
        return local_transport(get_target(board.target), work, board.name)
    if board.transport == "local":
        return LocalTransport(board.name, work, list(board.exec_prefix))
    return SSHTransport(board, trust_new_host=trust_new_host)


def local_transport(target: CompileTarget, work_dir: Path, board_name: str | None = None) -> LocalTransport:
    """This machine as a board of `target`: its binaries run directly, under QEMU user mode for a foreign
    Linux target, or its firmware under QEMU system emulation for a bare-metal one."""
    name = board_name or f"{target.name} on this machine"
    if target.bare_metal:
        return QemuSystemTransport(name, target, work_dir)
    return QemuTransport(name, target, work_dir) if target.qemu else LocalTransport(name, work_dir)
