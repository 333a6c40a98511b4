"""The one error type every stage's errors derive from, and how every command line reports it.

A `UserError` is a problem the user can fix: its message names the file, flag, op or board and what to do.
Each stage has its own subclasses (ucm: `DataError`, `CheckpointError`, `TrainingError`; compile:
`CompileError`; targets: `TargetError`), and each command line runs its body through `run_command`, which
prints such an error as one line and exits with status 2 (tvmc's `TVMCException` pattern). Anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

USER_ERROR_EXIT = 2


class UserError(Exception):
    """A problem the user can fix; the message says what and how."""


def run_command(body: Callable[[], int]) -> int:
    """`body()`'s exit status, or 2 after printing a `UserError` as `error: <message>`."""
    try:
        return body()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return USER_ERROR_EXIT
