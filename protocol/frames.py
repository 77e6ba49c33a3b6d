"""Frame layer: a fixed 12-byte header followed by a msgpack body.

    offset  size  field
    0       4     body length, unsigned big-endian (header not included)
    4       1     message type (see `protocol.messages.MsgType`)
    5       1     flags (must be 0 in version 1)
    6       2     reserved (must be 0)
    8       4     request id, unsigned big-endian

`FrameDecoder` is fed any split of the byte stream and returns whole frames. The size
limit is enforced as soon as a header is complete, before any of the body is buffered.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from .errors import FrameTooLarge, MalformedFrame

HEADER: Final = struct.Struct("!IBBHI")
HEADER_SIZE: Final = 12               # HEADER.size, as a literal the compiler folds
DEFAULT_MAX_FRAME: Final = 1024 * 1024   # body bytes
MAX_REQUEST_ID: Final = 0xFFFFFFFF
assert HEADER.size == HEADER_SIZE

# Final: compiled, C statics rather than dict lookups on every use
_pack_header: Final = HEADER.pack
_unpack_header: Final = HEADER.unpack_from


class Frame(NamedTuple):
    """One decoded frame: its header fields and its (still encoded) body."""

    type: int
    flags: int
    request_id: int
    body: bytes


_new_tuple: Final = tuple.__new__    # compiled-speed trick (protocol/buildinfo.py)
_FRAME: Final = Frame


def encode_frame(msg_type: int, request_id: int, body: bytes, flags: int = 0) -> bytes:
    """The bytes of one frame."""
    return _pack_header(len(body), msg_type, flags, 0, request_id) + body


class FrameDecoder:
    """Incremental frame parser: bytes in, `Frame`s out, no IO.

    Partial frames wait in a bytearray, and nothing is parsed again until enough bytes
    for the pending header or body have arrived, so a peer that trickles bytes one at a
    time costs linear work. After it raises, the stream is out of step and the decoder
    must not be fed again.
    """

    __slots__ = ("_buf", "_need", "max_body")

    def __init__(self, max_body: int = DEFAULT_MAX_FRAME) -> None:
        self._buf = bytearray()
        self._need = HEADER_SIZE
        self.max_body = max_body

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Add received bytes; return every frame they complete, in order."""
        pending = self._buf
        if pending:
            pending += data
            if len(pending) < self._need:
                return []
            buf: bytes | bytearray | memoryview = pending
        else:
            buf = data
        size = len(buf)
        pos = 0
        frames: list[Frame] = []
        need = HEADER_SIZE
        with memoryview(buf) as view:
            while size - pos >= HEADER_SIZE:
                length, msg_type, flags, reserved, request_id = _unpack_header(view, pos)
                if length > self.max_body:
                    raise FrameTooLarge(
                        f"frame body of {length} bytes exceeds the limit of {self.max_body}")
                if flags or reserved:
                    raise MalformedFrame("flags and reserved header bits must be 0 "
                                         f"(got {flags:#x}/{reserved:#x})")
                end = pos + HEADER_SIZE + length
                if end > size:
                    need = HEADER_SIZE + length
                    break
                frames.append(_new_tuple(_FRAME, (msg_type, flags, request_id,
                                                  view[pos + HEADER_SIZE:end].tobytes())))
                pos = end
            rest = view[pos:].tobytes() if pending is not buf and pos < size else b""
        if pending is buf:
            del pending[:pos]
        elif rest:
            pending += rest
        self._need = need
        return frames
