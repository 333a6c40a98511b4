"""The user's OpenSSH known_hosts file, read the way OpenSSH reads it and only ever appended to.

paramiko's own loader fails on lines it does not know (a `@cert-authority` line raises) and its saver rewrites
the whole file (comments, security-key entries and `@` markers are lost, `host,ip` lines are split). Here:
- every line paramiko can use (plain or hashed host names) becomes a known key; comments, `@cert-authority`
  lines and key types paramiko cannot verify (e.g. `sk-ssh-ed25519@openssh.com`) are left alone;
- `@revoked` keys are refused even where another line lists them;
- a newly trusted host is one line appended, hashed if the file's last host line is hashed (as OpenSSH's
  `HashKnownHosts` writes it), never a rewrite.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
from paramiko.hostkeys import HostKeyEntry, InvalidHostKey


@dataclass
class KnownHosts:
    path: Path
    entries: list[HostKeyEntry] = field(default_factory=list)
    revoked: list[paramiko.PKey] = field(default_factory=list)
    hash_new: bool = False  # append new hosts hashed, like the file's last host line

    def install(self, client: paramiko.SSHClient) -> None:
        """Make these the client's known host keys."""
        keys = client.get_host_keys()
        for entry in self.entries:
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)

    def is_revoked(self, key: paramiko.PKey) -> bool:
        return any(key.get_name() == r.get_name() and key.asbytes() == r.asbytes() for r in self.revoked)


def _entry(line: str) -> HostKeyEntry | None:
    try:
        return HostKeyEntry.from_line(line)
    except (InvalidHostKey, ValueError, IndexError, paramiko.SSHException):
        return None


def read_known_hosts(path: Path) -> KnownHosts:
    """The keys of a known_hosts file (an empty set when it does not exist)."""
    known = KnownHosts(path)
    if not path.is_file():
        return known
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            marker, _, rest = line.partition(" ")
            entry = _entry(rest) if marker == "@revoked" else None
            if entry is not None and entry.key is not None:
                known.revoked.append(entry.key)
            continue
        known.hash_new = line.startswith("|1|")
        entry = _entry(line)
        if entry is not None and entry.key is not None:
            known.entries.append(entry)
    return known


def append_host(path: Path, hostname: str, key: paramiko.PKey, hashed: bool) -> None:
    """Append one line for `hostname` (paramiko's name: `host`, or `[host]:port` off port 22)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = paramiko.HostKeys.hash_host(hostname) if hashed else hostname
    line = f"{name} {key.get_name()} {key.get_base64()}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as f:
        if f.tell() > 0:
            with path.open("rb") as existing:
                existing.seek(-1, os.SEEK_END)
                if existing.read(1) != b"\n":
                    line = "\n" + line
        f.write(line)


class AppendNewHost(paramiko.MissingHostKeyPolicy):
    """Trust an unknown host (the user said so) and record it by appending one line."""

    def __init__(self, known: KnownHosts) -> None:
        self.known = known

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if self.known.is_revoked(key):
            raise paramiko.SSHException(f"host key of {hostname} is marked @revoked in {self.known.path}")
        client.get_host_keys().add(hostname, key.get_name(), key)
        append_host(self.known.path, hostname, key, self.known.hash_new)
