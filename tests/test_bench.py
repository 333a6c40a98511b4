"""Boards and the harness: a real OpenSSH server on loopback, QEMU behind it, and the failure paths."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import paramiko
import pytest

from bench.deploy import run_on_board
from bench.harness import RunConfig, run
from compile.toolchains import get_target
from targets.board import BoardError, load_board, load_board_file
from targets.cpu import host_cpu
from targets.transport import BoardTimeoutError, CommandFailedError, TransportError
from targets.transport_local import LocalTransport, QemuTransport
from targets.transport_ssh import SSHTransport
from ucm.data import load_images

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
REPORT_KEYS = {"board", "emulated", "n_images", "device_miou", "float_miou", "delta_miou", "pixel_agreement",
               "device_latency_ms_p50", "device_latency_ms_p95", "float_latency_ms_p50", "flash_bytes", "ram_bytes"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An OpenSSH server on a loopback port, with a throwaway host key and a throwaway user key."""
    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd_bin).is_file():
        pytest.fail("sshd not found: install openssh-server (scripts/install_system_packages.sh does)")
    root = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "user_key", "other_key"):
        _keygen(root / name)
    (root / "authorized_keys").write_text((root / "user_key.pub").read_text())
    (root / "authorized_keys").chmod(0o600)
    port = _free_port()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\nStrictModes no\n"
        f"PidFile {root / 'sshd.pid'}\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    host_pub = (root / "host_key.pub").read_text().split()
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    yield {"port": port, "root": root, "user": subprocess.run(["id", "-un"], capture_output=True, text=True,
                                                               check=True).stdout.strip()}
    proc.terminate()
    proc.wait(timeout=10)


def _board_file(folder: Path, sshd: dict, *, key: str = "user_key", known_hosts: str = "known_hosts",
                exec_prefix: tuple[str, ...] = ("qemu-aarch64", "-cpu", "cortex-a72"), timeout: int = 300,
                name: str = "loopback-a72") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    root = sshd["root"]
    path = folder / f"{name}.toml"
    prefix = ", ".join(f'"{p}"' for p in exec_prefix)
    path.write_text(
        f'name = "{name}"\ndescription = "loopback sshd, aarch64 runner under QEMU"\ntarget = "cortex-a72"\n'
        f'transport = "ssh"\nexec_prefix = [{prefix}]\n\n[ssh]\nhost = "127.0.0.1"\nuser = "{sshd["user"]}"\n'
        f'port = {sshd["port"]}\nkey_file = "{root / key}"\nknown_hosts = "{root / known_hosts}"\n'
        f'work_dir = "{folder / "remote"}"\nconnect_timeout_s = 5\ncommand_timeout_s = {timeout}\n'
    )
    return path


def test_harness_end_to_end_over_ssh(sshd: dict, bundles: dict[str, Path], tmp_path: Path) -> None:
    board = _board_file(tmp_path / "boards", sshd)
    cfg = RunConfig(board=str(board), n=3, out=tmp_path / "run", bundle_dir=bundles["cortex-a72"], progress=False)
    report = run(cfg)
    assert REPORT_KEYS <= set(report)
    assert report["transport"].startswith("ssh ") and report["emulated"] is False
    assert report["n_images"] == 3 and report["pixel_agreement_int8_reference"] > 0.995
    assert abs(report["delta_miou"]) < 0.05 and report["device_latency_ms_p50"] > 0
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["device_miou"] == report["device_miou"]
    for png in ("latency_hist.png", "per_image_iou.png", "worst_overlays.png"):
        assert (tmp_path / "run" / png).stat().st_size > 1000
    assert "ssh" in (tmp_path / "run" / "report.md").read_text()
    host = host_cpu().describe()
    assert report["board_cpu"] == host and report["host_cpu"] == host  # the loopback "board" is this machine
    assert f"board CPU: {host}" in (tmp_path / "run" / "report.md").read_text()


def test_unknown_host_key_is_refused_unless_trusted(sshd: dict, tmp_path: Path) -> None:
    (sshd["root"] / "empty_known_hosts").write_text("")
    board = load_board_file(_board_file(tmp_path, sshd, known_hosts="empty_known_hosts"))
    with pytest.raises(TransportError, match="unknown host key.*--trust-new-host"):
        SSHTransport(board).run(["true"], 10)
    trusted = SSHTransport(board, trust_new_host=True)
    assert trusted.run(["echo", "hi there"], 10).stdout == "hi there\n"
    trusted.close()
    assert str(sshd["port"]) in (sshd["root"] / "empty_known_hosts").read_text()  # recorded
    assert SSHTransport(board).run(["true"], 10).exit_status == 0  # now known


def _sk_ed25519_line(host: str) -> str:
    """A security-key host entry as OpenSSH writes it (paramiko cannot verify this key type)."""
    def field(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data
    blob = field(b"sk-ssh-ed25519@openssh.com") + field(bytes(range(32))) + field(b"ssh:")
    return f"{host} sk-ssh-ed25519@openssh.com {base64.b64encode(blob).decode()}"


@pytest.mark.parametrize("hashed", [False, True])
def test_trusting_a_new_host_only_appends_to_known_hosts(sshd: dict, tmp_path: Path, hashed: bool) -> None:
    other = (sshd["root"] / "other_key.pub").read_text().split()[:2]
    other_key = " ".join(other)
    last = f"{paramiko.HostKeys.hash_host('example.org')} {other_key}" if hashed else f"example.org {other_key}"
    before = ("# boards of the lab\n"
              f"@cert-authority *.example.com {other_key}\n"
              f"{paramiko.HostKeys.hash_host('old.example.com')} {other_key}\n"
              f"github.com,140.82.112.3 {other_key}\n"
              f"{_sk_ed25519_line('sk.example.com')}\n"
              f"{last}").encode()  # no newline at the end
    known_hosts = sshd["root"] / f"rich_known_hosts_{hashed}"
    known_hosts.write_bytes(before)
    board = load_board_file(_board_file(tmp_path, sshd, known_hosts=known_hosts.name))
    with pytest.raises(TransportError, match="unknown host key"):  # and no traceback from the @cert-authority line
        SSHTransport(board).run(["true"], 10)
    assert known_hosts.read_bytes() == before
    trusted = SSHTransport(board, trust_new_host=True)
    assert trusted.run(["true"], 10).exit_status == 0
    trusted.close()
    after = known_hosts.read_bytes()
    assert after.startswith(before + b"\n")
    added = after[len(before) + 1:].decode()
    assert added.count("\n") == 1 and added.endswith("\n")
    host_key = " ".join((sshd["root"] / "host_key.pub").read_text().split()[:2])
    assert added.startswith("|1|") == hashed and added.rstrip().endswith(host_key)
    if not hashed:
        assert added.startswith(f"[127.0.0.1]:{sshd['port']} ")
    assert SSHTransport(board).run(["true"], 10).exit_status == 0  # the appended line is read back
    assert known_hosts.read_bytes() == after


def test_revoked_host_key_is_refused(sshd: dict, tmp_path: Path) -> None:
    host_key = " ".join((sshd["root"] / "host_key.pub").read_text().split()[:2])
    known_hosts = sshd["root"] / "revoked_known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{sshd['port']} {host_key}\n@revoked * {host_key}\n")
    board = load_board_file(_board_file(tmp_path, sshd, known_hosts=known_hosts.name))
    with pytest.raises(TransportError, match="@revoked"):
        SSHTransport(board).run(["true"], 10)


def test_changed_host_key_is_refused(sshd: dict, tmp_path: Path) -> None:
    other = (sshd["root"] / "other_key.pub").read_text().split()
    (sshd["root"] / "wrong_known_hosts").write_text(f"[127.0.0.1]:{sshd['port']} {other[0]} {other[1]}\n")
    board = load_board_file(_board_file(tmp_path, sshd, known_hosts="wrong_known_hosts"))
    with pytest.raises(TransportError, match="does not match"):
        SSHTransport(board).run(["true"], 10)


def test_wrong_key_file(sshd: dict, tmp_path: Path) -> None:
    board = load_board_file(_board_file(tmp_path, sshd, key="other_key"))
    with pytest.raises(TransportError, match="authentication failed with key file"):
        SSHTransport(board).run(["true"], 10)
    board = load_board_file(_board_file(tmp_path, sshd, key="no_such_key"))
    with pytest.raises(TransportError, match="does not exist"):
        SSHTransport(board).run(["true"], 10)


def test_timeouts(sshd: dict, tmp_path: Path) -> None:
    board = load_board_file(_board_file(tmp_path, sshd))
    transport = SSHTransport(board)
    with pytest.raises(BoardTimeoutError, match="ran past 1 s"):
        transport.run(["sleep", "5"], 1)
    transport.close()
    with socket.socket() as silent:  # accepts connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        dead = load_board_file(_board_file(tmp_path, {**sshd, "port": port}, name="silent"))
        started = time.monotonic()
        with pytest.raises(TransportError, match="silent"):
            SSHTransport(dead).run(["true"], 10)
        assert time.monotonic() - started < 30


def test_failing_command_and_arguments_are_not_shell(sshd: dict, tmp_path: Path) -> None:
    board = load_board_file(_board_file(tmp_path, sshd))
    transport = SSHTransport(board)
    with pytest.raises(CommandFailedError, match="exited with 1"):
        transport.check(["false"], 10)
    marker = tmp_path / "pwned"
    out = transport.run(["echo", f"; touch {marker}"], 10)  # quoted, not spliced into a shell string
    assert out.stdout.strip() == f"; touch {marker}" and not marker.exists()
    transport._client.close()  # a dropped connection is reopened
    assert transport.run(["echo", "again"], 10).stdout == "again\n"
    transport.close()


def test_runner_failure_on_the_board_is_reported(sshd: dict, bundles: dict[str, Path], tmp_path: Path) -> None:
    board = _board_file(tmp_path / "boards", sshd, exec_prefix=("false",), name="broken")
    cfg = RunConfig(board=str(board), n=2, out=tmp_path / "run", bundle_dir=bundles["cortex-a72"], progress=False)
    with pytest.raises(CommandFailedError, match="the runner failed"):
        run(cfg)


def _interrupt_second_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    real_run = LocalTransport.run
    calls = {"runner": 0}

    def flaky(self, argv, timeout_s):
        if argv[0].endswith("ucm_runner"):
            calls["runner"] += 1
            if calls["runner"] == 2:
                raise KeyboardInterrupt  # the user presses Ctrl-C during the second chunk
        return real_run(self, argv, timeout_s)

    monkeypatch.setattr(LocalTransport, "run", flaky)


def test_interrupted_run_resumes(bundles: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names, images = load_images(SAMPLE, 256, 4)
    runner = bundles["x86_64"] / "ucm_runner"
    transport = LocalTransport("host", tmp_path / "work")
    with monkeypatch.context() as m:
        _interrupt_second_chunk(m)
        with pytest.raises(KeyboardInterrupt):
            run_on_board(transport, runner, names, images, tmp_path / "out", chunk=2, progress=False)
    progress = json.loads((tmp_path / "out" / "progress.json").read_text())
    assert len(progress["images"]) == 2  # the first chunk is kept
    result = run_on_board(transport, runner, names, images, tmp_path / "out", chunk=2, progress=False)
    assert result.resumed == 2 and len(result.micros) == 4 and result.masks.shape == (4, 256, 256)
    again = run_on_board(transport, runner, names, images, tmp_path / "out", chunk=2, progress=False)
    assert again.resumed == 0  # a finished run is measured afresh


def test_resume_is_keyed_by_content(bundles: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupted run resumed on other images of the same names (another --data) or with another ONNX /
    float checkpoint must not reuse the old board results."""
    names, images = load_images(SAMPLE, 256, 4)
    other = images[::-1, ::-1].copy()  # other pixels, the same names
    runner = bundles["x86_64"] / "ucm_runner"
    transport = LocalTransport("host", tmp_path / "work")
    context = {"onnx_sha256": "a" * 64, "float_checkpoint_sha256": "b" * 64}
    with monkeypatch.context() as m:
        _interrupt_second_chunk(m)
        with pytest.raises(KeyboardInterrupt):
            run_on_board(transport, runner, names, images, tmp_path / "out", chunk=2, progress=False, context=context)
    result = run_on_board(transport, runner, names, other, tmp_path / "out", chunk=2, progress=False, context=context)
    fresh = run_on_board(transport, runner, names, other, tmp_path / "fresh", chunk=2, progress=False)
    assert result.resumed == 0 and "other pixels" in result.discarded[0]
    assert np.array_equal(result.masks, fresh.masks)
    with monkeypatch.context() as m:
        _interrupt_second_chunk(m)
        with pytest.raises(KeyboardInterrupt):
            run_on_board(transport, runner, names, images, tmp_path / "ctx", chunk=2, progress=False, context=context)
    changed = {**context, "onnx_sha256": "c" * 64}
    result = run_on_board(transport, runner, names, images, tmp_path / "ctx", chunk=2, progress=False, context=changed)
    assert result.resumed == 0 and result.discarded == ["onnx_sha256 changed since the interrupted run: every image "
                                                        "runs afresh"]


def test_host_option_and_work_dir_with_spaces(tmp_path: Path) -> None:
    board = load_board("rpi4")
    assert board.with_host("pi@[::1]:2200").ssh.host == "::1" and board.with_host("pi@[::1]:2200").ssh.port == 2200
    assert board.with_host("10.0.0.7").ssh.port == 22
    for bad, why in (("pi@127.0.0.1:abc", "port 'abc' is not a number"), ("pi@host:70000", "port '70000'"),
                     ("pi@", "no host name"), ("pi@[::1", "IPv6")):
        with pytest.raises(BoardError, match=why):
            board.with_host(bad)
    out = subprocess.run([sys.executable, "bench/run.py", "--board", "rpi4", "--host", "pi@127.0.0.1:abc"],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and "port 'abc'" in out.stderr and "Traceback" not in out.stderr
    spaced = LocalTransport("spaced", tmp_path / "board work dir")
    files = []
    for name in ("a file", "b"):
        (tmp_path / name).write_bytes(name.encode() * 100)
        files.append((tmp_path / name, spaced.work_dir / name))
    spaced.upload(files, executable=True)
    assert (tmp_path / "board work dir" / "a file").read_bytes() == b"a file" * 100


@pytest.mark.parametrize("target", ["cortex-a72", "rv64gc"])
def test_qemu_transport_matches_host(bundles: dict[str, Path], tmp_path: Path, target: str) -> None:
    names, images = load_images(SAMPLE, 256, 2)
    host = run_on_board(LocalTransport("host", tmp_path / "h"), bundles["x86_64"] / "ucm_runner", names, images,
                        tmp_path / "host", progress=False)
    emu = QemuTransport("emu", get_target(target), tmp_path / "e")
    assert emu.emulated and "emulated" in emu.describe()
    result = run_on_board(emu, bundles[target] / "ucm_runner", names, images, tmp_path / target, progress=False)
    assert np.array_equal(result.masks, host.masks)


def test_boards_shipped_and_errors(tmp_path: Path) -> None:
    names = {load_board(n).target for n in ("rpi4", "rpi5", "visionfive2", "bpi-f3", "host", "host-vnni")}
    assert names == {"cortex-a72", "cortex-a76", "rv64gc", "rv64gcv", "x86_64", "x86_64-vnni"}
    with pytest.raises(BoardError, match="known boards: .*rpi4"):
        load_board("rpi3")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\ntarget = "cortex-a72"\ntransport = "ssh"\nexec_prefix = "qemu-aarch64 -cpu x"\n')
    with pytest.raises(BoardError, match="argument list"):
        load_board_file(bad)
    bad.write_text('name = "bad"\ntarget = "m4"\ntransport = "ssh"\n')
    with pytest.raises(BoardError, match="unknown target 'm4'"):
        load_board_file(bad)
    assert load_board("rpi4").with_host("pi@10.0.0.7:2222").ssh.port == 2222


def test_emulated_run_is_marked(bundles: dict[str, Path], tmp_path: Path) -> None:
    cfg = RunConfig(board="rpi4", n=2, out=tmp_path / "run", bundle_dir=bundles["cortex-a72"], progress=False)
    report = run(cfg)
    assert report["emulated"] is True and "not representative" in report["latency_note"]
    assert "EMULATED" in (tmp_path / "run" / "report.md").read_text()


def test_corrupt_upload_is_detected(tmp_path: Path) -> None:
    class Lossy(LocalTransport):
        def put(self, local: Path, remote) -> None:
            Path(remote).write_bytes(local.read_bytes()[:-1])  # a byte lost on the way

    source = tmp_path / "runner"
    source.write_bytes(b"\x7fELF" + bytes(100))
    transport = Lossy("lossy", tmp_path / "board")
    with pytest.raises(TransportError, match="upload of runner .* is corrupt"):
        transport.upload([(source, transport.work_dir / "runner")])
    LocalTransport("ok", tmp_path / "board2").upload([(source, LocalTransport("ok", tmp_path / "board2").work_dir / "runner")],
                                                      executable=True)
    assert (tmp_path / "board2" / "runner").stat().st_mode & 0o111


def test_profile_float_profiles_the_float_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench.profile --float`: the float ONNX into dist/<target>-float (never the int8 model into it)."""
    import bench.profile as profile
    from ucm.paths import DIST, FLOAT_ONNX, INT8_ONNX

    class Built(Exception):
        pass

    def ensure_bundle(target: str, onnx: Path, bundle_dir: Path) -> dict:
        raise Built(target, onnx, bundle_dir)

    monkeypatch.setattr(profile, "ensure_bundle", ensure_bundle)
    for float_model, onnx, folder in ((True, FLOAT_ONNX, "x86_64-float"), (False, INT8_ONNX, "x86_64")):
        with pytest.raises(Built) as built:
            profile.main(["--board", "host", *(["--float"] if float_model else [])])
        assert built.value.args == ("x86_64", onnx, DIST / folder)
