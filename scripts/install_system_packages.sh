#!/usr/bin/env bash
# The system packages ucm-edge needs beyond Python: a host C compiler, cross compilers for the boards, QEMU
# user mode for emulated boards, OpenSSH (server for the SSH end-to-end test) and Python's venv module.
# QEMU comes from bookworm-backports (10.x): Debian 12's QEMU 7.2 aborts on the RVV code TVM's LLVM emits for
# rv64gcv. Every probe below tolerates a missing tool: this script runs first on a machine that has none.
set -euo pipefail
# Overridable so that tests can run this script against a throwaway root (tests/test_install.py).
os_release=${UCM_OS_RELEASE:-/etc/os-release}
apt_sources=${UCM_APT_SOURCES_DIR:-/etc/apt/sources.list.d}
sshd_path=${UCM_SSHD_PATH:-/usr/sbin/sshd}  # not on a non-root PATH

have() { command -v "$1" >/dev/null 2>&1; }

# Major version of QEMU user mode, empty when it is missing or prints no version.
qemu_major() {
  have qemu-riscv64 || return 0
  { qemu-riscv64 --version 2>/dev/null || true; } | sed -n 's/.*version \([0-9]*\).*/\1/p' | head -1
}

missing=()
have gcc || missing+=(gcc)
have make || missing+=(make)
have aarch64-linux-gnu-gcc || missing+=(gcc-aarch64-linux-gnu)
have riscv64-linux-gnu-gcc || missing+=(gcc-riscv64-linux-gnu)
{ have sshd || [ -x "$sshd_path" ]; } || missing+=(openssh-server)
have ssh-keygen || missing+=(openssh-client)
if ! have python3; then
  missing+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
major=$(qemu_major)
need_qemu=0
if [ -z "$major" ] || [ "$major" -lt 8 ]; then need_qemu=1; fi

if [ ${#missing[@]} -eq 0 ] && [ $need_qemu -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! have apt-get; then
  qemu_note=""
  if [ $need_qemu -eq 1 ]; then qemu_note="qemu-user (>= 8, e.g. from bookworm-backports)"; fi
  echo "ucm-edge: not root or no apt-get; please install: ${missing[*]} ${qemu_note}" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
bookworm=0
if grep -q bookworm "$os_release" 2>/dev/null; then bookworm=1; fi
if [ $need_qemu -eq 1 ] && [ $bookworm -eq 1 ]; then
  echo "deb http://deb.debian.org/debian bookworm-backports main" > "$apt_sources/bookworm-backports.list"
fi
apt-get update -q
if [ ${#missing[@]} -gt 0 ]; then apt-get install -y -q "${missing[@]}"; fi
if [ $need_qemu -eq 1 ]; then
  if [ $bookworm -eq 1 ]; then
    apt-get install -y -q -t bookworm-backports qemu-user
  else
    apt-get install -y -q qemu-user
  fi
fi
