"""The engine's one exception: a request refused with a SPEC error code."""

from __future__ import annotations

from protocol.errors import ErrorCode


class Refused(Exception):
    """A container, sub-request or operator command refused; nothing was changed."""

    def __init__(self, code: ErrorCode, message: str = "") -> None:
        super().__init__(message or code.value)
        self.code = code
        self.message = message or code.value
