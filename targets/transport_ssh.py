"""A real board over SSH (paramiko). Host keys are verified against known_hosts (`targets.known_hosts`); an
unknown host is refused unless the user trusts it explicitly (then one line is appended). Commands are argument
lists, quoted with shlex for the remote shell. Connection and command timeouts; a dropped connection is reopened."""

from __future__ import annotations

import shlex
import time
from pathlib import Path, PurePosixPath

import paramiko

from targets.board import Board
from targets.known_hosts import AppendNewHost, read_known_hosts
from targets.transport import BoardTimeoutError, CommandResult, Transport, TransportError

RETRIES = 3


class SSHTransport(Transport):
    def __init__(self, board: Board, trust_new_host: bool = False) -> None:
        self.board = board
        self.board_name = board.name
        self.settings = board.ssh
        self.trust_new_host = trust_new_host
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    @property
    def work_dir(self) -> PurePosixPath:
        return PurePosixPath(self.settings.work_dir)

    def describe(self) -> str:
        s = self.settings
        return f"ssh {s.user}@{s.host}:{s.port}"

    def exec_prefix(self) -> list[str]:
        return list(self.board.exec_prefix)

    # -- connection -----------------------------------------------------------------------------------
    def connect(self) -> paramiko.SSHClient:
        if self._client is not None and self._client.get_transport() and self._client.get_transport().is_active():
            return self._client
        s = self.settings
        where = f"board {self.board_name} ({s.user}@{s.host}:{s.port})"
        known_hosts = Path(s.known_hosts).expanduser()
        known = read_known_hosts(known_hosts)
        client = paramiko.SSHClient()
        known.install(client)
        client.set_missing_host_key_policy(AppendNewHost(known) if self.trust_new_host else paramiko.RejectPolicy())
        key_file = str(Path(s.key_file).expanduser()) if s.key_file else None
        if key_file and not Path(key_file).is_file():
            raise TransportError(f"{where}: key file {key_file} does not exist; set ssh.key_file in {self.board.path}")
        try:
            client.connect(
                s.host, port=s.port, username=s.user or None, key_filename=key_file,
                look_for_keys=key_file is None, allow_agent=key_file is None,
                timeout=s.connect_timeout_s, banner_timeout=s.connect_timeout_s, auth_timeout=s.connect_timeout_s,
            )
        except paramiko.BadHostKeyException as e:
            raise TransportError(
                f"{where}: the host key does not match the one in {known_hosts}: refusing to connect. If the board "
                "was reinstalled, remove its old line with 'ssh-keygen -R HOST' and connect again"
            ) from e
        except paramiko.AuthenticationException as e:
            raise TransportError(
                f"{where}: authentication failed with key file {key_file or '(agent/default keys)'}; check "
                "ssh.key_file and that its public key is in the board's ~/.ssh/authorized_keys"
            ) from e
        except paramiko.SSHException as e:
            if "@revoked" in str(e):
                raise TransportError(f"{where}: {e}: refusing to connect") from e
            if "not found in known_hosts" in str(e):
                raise TransportError(
                    f"{where}: unknown host key (not in {known_hosts}); verify the board's fingerprint and pass "
                    "--trust-new-host to record it"
                ) from e
            raise TransportError(f"{where}: SSH failed: {e}") from e
        except TimeoutError as e:
            raise BoardTimeoutError(f"{where}: no connection within {s.connect_timeout_s:.0f} s") from e
        except OSError as e:
            raise TransportError(f"{where}: cannot connect: {e}") from e
        if known.is_revoked(client.get_transport().get_remote_server_key()):
            client.close()
            raise TransportError(f"{where}: the host key is marked @revoked in {known_hosts}: refusing to connect")
        self._client = client
        self._sftp = None
        return client

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
        if self._client is not None:
            self._client.close()
        self._client = self._sftp = None

    def _retrying(self, what: str, action):
        """Run `action` and reopen the connection when it drops (up to RETRIES times)."""
        for attempt in range(RETRIES + 1):
            try:
                return action()
            except (paramiko.SSHException, EOFError, ConnectionError, OSError) as e:
                if isinstance(e, TransportError) or attempt == RETRIES:
                    if isinstance(e, TransportError):
                        raise
                    raise TransportError(f"board {self.board_name}: {what} failed after {RETRIES} retries: {e}") from e
                self.close()
                time.sleep(min(2.0 ** attempt, 5.0))
        raise AssertionError("unreachable")

    def _sftp_client(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self.connect().open_sftp()
        return self._sftp

    # -- operations ------------------------------------------------------------------------------------
    def run(self, argv: list[str], timeout_s: float) -> CommandResult:
        command = shlex.join(argv)
        return self._retrying(f"'{command}'", lambda: self._run_once(command, timeout_s))

    def _run_once(self, command: str, timeout_s: float) -> CommandResult:
        channel = self.connect().get_transport().open_session(timeout=self.settings.connect_timeout_s)
        channel.exec_command(command)
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout_s
        while True:
            while channel.recv_ready():
                out += channel.recv(65536)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
            if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                break
            if time.monotonic() > deadline:
                channel.close()
                raise BoardTimeoutError(f"board {self.board_name}: '{command}' ran past {timeout_s:.0f} s; "
                                        "raise ssh.command_timeout_s or use fewer images")
            if channel.closed and not channel.exit_status_ready():
                raise EOFError("channel closed before the command finished")
            time.sleep(0.01)
        status = channel.recv_exit_status()
        channel.close()
        return CommandResult(status, out.decode(errors="replace"), err.decode(errors="replace"))

    def put(self, local: Path, remote: PurePosixPath) -> None:
        self._retrying(f"upload of {local.name}", lambda: self._sftp_client().put(str(local), str(remote)))

    def get(self, remote: PurePosixPath, local: Path) -> None:
        self._retrying(f"download of {remote}", lambda: self._sftp_client().get(str(remote), str(local)))
