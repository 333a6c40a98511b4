"""The compile stage's one error type (tvmc's `TVMCException` pattern): every problem a user can fix (an ONNX
file, an op, a target, a toolchain, a build) is a `CompileError` (a `ucm.errors.UserError`) whose message
names the file, op or target and the fix; the command lines print it and exit with status 2."""

from __future__ import annotations

from ucm.errors import UserError


class CompileError(UserError):
    """A compile problem the user can act on; the message says what and how."""
