"""The boards stage's one error type: a board file, a connection, a transfer or a command on the board that
failed in a way the user can fix (a `ucm.errors.UserError`; the message names the board and the fix)."""

from __future__ import annotations

from ucm.errors import UserError


class TargetError(UserError):
    """A board or transport problem the user can act on."""
