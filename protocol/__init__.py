"""Sans-IO core of the charging wire protocol: frames, messages, codec, errors.

Nothing here performs IO or reads a clock; `cc_server` and `cc_client` drive it.
"""

from . import buildinfo as _buildinfo  # noqa: F401  (first: it picks the compiled or pure build)
from .codec import decode, decode_body, encode, encode_body
from .errors import ErrorCode, FrameTooLarge, InvalidMessage, MalformedFrame, ProtocolError
from .frames import DEFAULT_MAX_FRAME, HEADER_SIZE, Frame, FrameDecoder, encode_frame
from .messages import (
    PROTOCOL_VERSION,
    REPLY,
    SUPPORTED_VERSIONS,
    ChargeableItem,
    MsgType,
    RatingResult,
    Resolution,
    ResultType,
    Transaction,
)

__all__ = [
    "DEFAULT_MAX_FRAME", "HEADER_SIZE", "PROTOCOL_VERSION", "REPLY", "SUPPORTED_VERSIONS",
    "ChargeableItem", "ErrorCode", "Frame", "FrameDecoder", "FrameTooLarge", "InvalidMessage",
    "MalformedFrame", "MsgType", "ProtocolError", "RatingResult", "Resolution", "ResultType",
    "Transaction", "decode", "decode_body", "encode", "encode_body", "encode_frame",
]
