"""`MessageDecoder`: fed any split of a Diameter byte stream, gives back whole messages.

The size limit is checked as soon as a header's first word is in, before the body is
buffered. After a `FramingError` the stream is out of step: close the connection.
"""

from __future__ import annotations

from typing import Final

from .codec import HEADER_SIZE, check_header

DEFAULT_MAX_MESSAGE: Final = 64 * 1024


class MessageDecoder:
    """Bytes in, whole messages (still encoded) out; no IO."""

    __slots__ = ("_buf", "_need", "max_size")

    def __init__(self, max_size: int = DEFAULT_MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self._need = HEADER_SIZE
        self.max_size = max_size

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole message."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add received bytes; return the messages they complete, in order."""
        buf = self._buf
        buf += data
        if len(buf) < self._need:
            return []
        out: list[bytes] = []
        pos = 0
        size = len(buf)
        need = HEADER_SIZE
        while size - pos >= HEADER_SIZE:
            length = check_header(buf, pos, self.max_size)
            if size - pos < length:
                need = length
                break
            out.append(bytes(buf[pos:pos + length]))
            pos += length
        del buf[:pos]
        self._need = need
        return out
