#!/usr/bin/env bash
# The system packages ucm-edge needs beyond Python: cross compilers for the boards, QEMU user mode for
# emulated boards, and OpenSSH (server for the SSH end-to-end test). QEMU comes from bookworm-backports
# (10.x): Debian 12's QEMU 7.2 aborts on the RVV code TVM's LLVM emits for rv64gcv.
set -euo pipefail

missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
command -v riscv64-linux-gnu-gcc >/dev/null || missing+=(gcc-riscv64-linux-gnu)
command -v make >/dev/null || missing+=(make)
{ command -v sshd >/dev/null || [ -x /usr/sbin/sshd ]; } || missing+=(openssh-server)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
qemu_major=$(qemu-riscv64 --version 2>/dev/null | sed -n 's/.*version \([0-9]*\).*/\1/p' | head -1)
need_qemu=0
if [ -z "$qemu_major" ] || [ "$qemu_major" -lt 8 ]; then need_qemu=1; fi

if [ ${#missing[@]} -eq 0 ] && [ $need_qemu -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "ucm-edge: please install: ${missing[*]} $([ $need_qemu -eq 1 ] && echo 'qemu-user (>= 8, e.g. from bookworm-backports)')" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if [ $need_qemu -eq 1 ] && grep -q bookworm /etc/os-release 2>/dev/null; then
  echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/bookworm-backports.list
fi
apt-get update -q
if [ ${#missing[@]} -gt 0 ]; then apt-get install -y -q "${missing[@]}"; fi
if [ $need_qemu -eq 1 ]; then
  if grep -q bookworm /etc/os-release 2>/dev/null; then
    apt-get install -y -q -t bookworm-backports qemu-user
  else
    apt-get install -y -q qemu-user
  fi
fi
