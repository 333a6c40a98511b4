"""python -m targets list [--boards-dir DIR]: the boards ucm-edge knows, their targets and transports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from targets.board import BOARDS_DIR, list_boards
from ucm.errors import run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m targets", description=__doc__.split(":")[0])
    parser.add_argument("command", choices=["list"])
    parser.add_argument("--boards-dir", type=Path, default=BOARDS_DIR)
    args = parser.parse_args(argv)
    return run_command(lambda: _list(args.boards_dir))


def _list(boards_dir: Path) -> int:
    boards = list_boards(boards_dir)
    rows = [("board", "target", "transport", "reached at", "description")]
    for b in boards:
        if b.has_host:
            where = f"{b.ssh.user}@{b.ssh.host}:{b.ssh.port}"
        elif b.transport == "local":
            where = "this host"
        else:
            where = "emulated (QEMU)" + (": no host set" if b.transport == "ssh" else "")
        rows.append((b.name, b.target, b.transport, where, b.description))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
