"""Board descriptions: one TOML file per board in `targets/boards/` (or a folder given by the user)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from compile.toolchains import TARGETS
from targets.errors import TargetError

BOARDS_DIR = Path(__file__).resolve().parent / "boards"
TRANSPORTS = ("ssh", "qemu", "local")


class BoardError(TargetError, ValueError):
    """A board that does not exist or whose TOML is wrong; the message names the file and the key."""


@dataclass(frozen=True)
class SSHSettings:
    host: str = ""
    user: str = ""
    port: int = 22
    key_file: str = ""  # private key; "" = the SSH agent / default keys
    known_hosts: str = "~/.ssh/known_hosts"
    work_dir: str = "/tmp/ucm-edge"
    connect_timeout_s: float = 10.0
    command_timeout_s: float = 600.0


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    target: str  # a compile target (python -m compile --list-targets)
    transport: str  # "ssh" | "qemu" | "local"
    ssh: SSHSettings = field(default_factory=SSHSettings)
    exec_prefix: tuple[str, ...] = ()  # prepended to the runner's command line on the board
    path: Path | None = None

    @property
    def has_host(self) -> bool:
        return self.transport == "ssh" and bool(self.ssh.host)

    def with_host(self, user_at_host: str) -> Board:
        """The board reached at USER@HOST[:PORT] (or USER@[IPv6]:PORT) instead of the TOML's host."""
        user, host, port = parse_host(user_at_host)
        return replace(self, transport="ssh", ssh=replace(self.ssh, host=host, user=user or self.ssh.user,
                                                           port=port or self.ssh.port))


def parse_host(text: str) -> tuple[str, str, int | None]:
    """(user, host, port) of USER@HOST[:PORT]; user "" and port None where not given."""
    user, _, rest = text.rpartition("@")
    port_text: str | None = None
    if rest.startswith("["):
        host, closed, tail = rest[1:].partition("]")
        if not closed or (tail and not tail.startswith(":")):
            raise BoardError(f"--host {text}: write an IPv6 address as USER@[ADDRESS]:PORT")
        port_text = tail[1:] if tail else None
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
    else:
        host = rest
    if not host:
        raise BoardError(f"--host {text}: no host name; use USER@HOST[:PORT]")
    if port_text is None:
        return user, host, None
    if not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
        raise BoardError(f"--host {text}: port '{port_text}' is not a number from 1 to 65535; use USER@HOST[:PORT]")
    return user, host, int(port_text)


def _ssh_settings(section: dict, where: str) -> SSHSettings:
    defaults = SSHSettings()
    unknown = set(section) - set(SSHSettings.__dataclass_fields__)
    if unknown:
        raise BoardError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(SSHSettings.__dataclass_fields__)}")
    values = {}
    for key, value in section.items():
        default = getattr(defaults, key)
        if isinstance(default, float) and isinstance(value, int):
            value = float(value)
        if not isinstance(value, type(default)):
            raise BoardError(f"{where}: '{key}' must be {type(default).__name__}, got {value!r}")
        values[key] = value
    return SSHSettings(**values)


def load_board_file(path: Path) -> Board:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise BoardError(f"{path}: cannot read board description: {e}") from e
    for key in ("name", "target", "transport"):
        if key not in data:
            raise BoardError(f"{path}: missing key '{key}'")
    if data["target"] not in TARGETS:
        raise BoardError(f"{path}: unknown target '{data['target']}'; known: {', '.join(TARGETS)}")
    if data["transport"] not in TRANSPORTS:
        raise BoardError(f"{path}: transport must be one of {TRANSPORTS}, got '{data['transport']}'")
    known = {"name", "description", "target", "transport", "ssh", "exec_prefix"}
    if set(data) - known:
        raise BoardError(f"{path}: unknown keys {sorted(set(data) - known)}; known: {sorted(known)}")
    prefix = data.get("exec_prefix", [])
    if not isinstance(prefix, list) or not all(isinstance(p, str) for p in prefix):
        raise BoardError(f"{path}: exec_prefix must be a list of strings (an argument list, not a shell string)")
    ssh = _ssh_settings(data.get("ssh", {}), f"{path} [ssh]")
    return Board(name=data["name"], description=data.get("description", ""), target=data["target"],
                 transport=data["transport"], ssh=ssh, exec_prefix=tuple(prefix), path=path)


def list_boards(boards_dir: Path = BOARDS_DIR) -> list[Board]:
    return [load_board_file(p) for p in sorted(boards_dir.glob("*.toml"))]


def load_board(name_or_path: str, boards_dir: Path = BOARDS_DIR) -> Board:
    """A board by name (a file in `boards_dir`) or by the path of its TOML file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        return load_board_file(path)
    for board in list_boards(boards_dir):
        if board.name == name_or_path:
            return board
    names = ", ".join(b.name for b in list_boards(boards_dir))
    raise BoardError(f"unknown board '{name_or_path}'; known boards: {names} (add one as {boards_dir}/<name>.toml)")
