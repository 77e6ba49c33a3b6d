"""The exceptions of the Diameter core.

    DiameterError
     +-- FramingError    the byte stream is out of step (bad version, length): close it
     +-- AvpError        one message is wrong; answer it with `result_code` and `failed`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .codec import Avp


class DiameterError(Exception):
    """Base of this package's errors."""


class FramingError(DiameterError):
    """The stream cannot be read on: a header with a bad version, length or size."""


class AvpError(DiameterError):
    """A message that decodes as a whole but cannot be served: the Result-Code to answer
    with, the AVP at fault (for Failed-AVP), and a short text (for Error-Message)."""

    def __init__(self, result_code: int, message: str, failed: Avp | None = None) -> None:
        super().__init__(f"{result_code}: {message}")
        self.result_code = result_code
        self.message = message
        self.failed = failed
