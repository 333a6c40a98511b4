"""Boards (TOML descriptions) and the transports that reach them: SSH, QEMU user-mode emulation, local."""
