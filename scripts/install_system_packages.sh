#!/usr/bin/env bash
# The system packages ucm-edge needs beyond Python: a host C compiler, cross compilers for the boards (Linux
# boards, and arm-none-eabi with newlib for the Cortex-M55 firmware), QEMU user mode for emulated Linux
# boards and QEMU system emulation (qemu-system-arm) for the emulated microcontroller board, OpenSSH (server
# for the SSH end-to-end test) and Python's venv module. QEMU comes from bookworm-backports (10.x): Debian
# 12's QEMU 7.2 aborts on the RVV code TVM's LLVM emits for rv64gcv. Every probe below tolerates a missing
# tool: this script runs first on a machine that has none.
set -euo pipefail
# Overridable so that tests can run this script against a throwaway root (tests/test_install.py).
os_release=${UCM_OS_RELEASE:-/etc/os-release}
apt_sources=${UCM_APT_SOURCES_DIR:-/etc/apt/sources.list.d}
sshd_path=${UCM_SSHD_PATH:-/usr/sbin/sshd}  # not on a non-root PATH
newlib_specs=${UCM_NEWLIB_SPECS:-/usr/lib/arm-none-eabi/newlib/rdimon.specs}  # semihosting C library

have() { command -v "$1" >/dev/null 2>&1; }

# Major version of a QEMU binary, empty when it is missing or prints no version.
qemu_major() {
  have "$1" || return 0
  { "$1" --version 2>/dev/null || true; } | sed -n 's/.*version \([0-9]*\).*/\1/p' | head -1
}

# The QEMU package a tool comes from, when the tool is missing or older than QEMU 8.
old_qemu() {
  local major
  major=$(qemu_major "$1")
  if [ -z "$major" ] || [ "$major" -lt 8 ]; then echo "$2"; fi
}

missing=()
have gcc || missing+=(gcc)
have make || missing+=(make)
have aarch64-linux-gnu-gcc || missing+=(gcc-aarch64-linux-gnu)
have riscv64-linux-gnu-gcc || missing+=(gcc-riscv64-linux-gnu)
have arm-none-eabi-gcc || missing+=(gcc-arm-none-eabi)
[ -f "$newlib_specs" ] || missing+=(libnewlib-arm-none-eabi)
{ have sshd || [ -x "$sshd_path" ]; } || missing+=(openssh-server)
have ssh-keygen || missing+=(openssh-client)
if ! have python3; then
  missing+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
qemu=()
for package in $(old_qemu qemu-riscv64 qemu-user) $(old_qemu qemu-system-arm qemu-system-arm); do qemu+=("$package"); done

if [ ${#missing[@]} -eq 0 ] && [ ${#qemu[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! have apt-get; then
  qemu_note=""
  if [ ${#qemu[@]} -gt 0 ]; then qemu_note="${qemu[*]} (QEMU >= 8, e.g. from bookworm-backports)"; fi
  echo "ucm-edge: not root or no apt-get; please install: ${missing[*]} ${qemu_note}" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
bookworm=0
if grep -q bookworm "$os_release" 2>/dev/null; then bookworm=1; fi
if [ ${#qemu[@]} -gt 0 ] && [ $bookworm -eq 1 ]; then
  echo "deb http://deb.debian.org/debian bookworm-backports main" > "$apt_sources/bookworm-backports.list"
fi
apt-get update -q
if [ ${#missing[@]} -gt 0 ]; then apt-get install -y -q "${missing[@]}"; fi
if [ ${#qemu[@]} -gt 0 ]; then
  if [ $bookworm -eq 1 ]; then
    apt-get install -y -q -t bookworm-backports "${qemu[@]}"
  else
    apt-get install -y -q "${qemu[@]}"
  fi
fi
