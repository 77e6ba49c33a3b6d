"""msgpack bodies <-> messages, with exact decimals, aware datetimes and strict validation.

Encoding rules (PROTOCOL.md has the full table):
- Decimal: msgpack extension type 1, payload the ASCII text of the number ("10.50").
- datetime: the standard msgpack timestamp extension (type -1), always UTC.
- bytes: msgpack bin; strings: msgpack str (UTF-8); floats never carry money or quantities.
- Decimals are written in plain notation, never with an exponent ("1000", not "1E+3").
- Every body is one map with string keys. Bytes that are not exactly that (bad msgpack,
  trailing bytes, another type, a non-string key in any map) and unknown message types
  are `BadBody` (PROTOCOL_ERROR: the connection closes). A well-formed map with an
  unknown, missing or wrong field is `InvalidMessage` (INVALID_REQUEST, naming the field).

The modules, bottom up: `wire` (msgpack, the decimal extension type and its caches),
`fields` (the field checks), `values` (items, transactions, rating results, subscribers,
sessions), `execute` (the EXECUTE and EXECUTE_RESULT bodies), `admin` (the operator
commands and their bodies), `bodies` (every other body, and the dispatch by message type).
This package re-exports the public names, so `protocol.codec.X` is what callers use.
"""

from __future__ import annotations

from .admin import ADMIN_COMMANDS, MUTATING_ADMIN, admin_value_from_wire
from .bodies import decode, decode_body, encode, encode_body, execute_result_outcomes
from .fields import MAX_OP_ID
from .values import (
    item_from_wire,
    item_to_wire,
    rating_from_prepared,
    rating_from_wire,
    session_from_wire,
    session_to_wire,
    subscriber_from_wire,
    subscriber_to_wire,
    tx_from_wire,
    tx_to_wire,
)
from .wire import (
    DECIMALS,
    EXT_BOUND,
    EXT_DECIMAL,
    MAX_DECIMAL_EXPONENT,
    MAX_DECIMAL_TEXT,
    MIN_DECIMAL_EXPONENT,
    DecimalCache,
    check_decimal,
    pack,
    short,
    unpack,
)
from .wire import _default as _default  # msgpack's default hook, for tests comparing packers

__all__ = [
    "ADMIN_COMMANDS", "DECIMALS", "EXT_BOUND", "EXT_DECIMAL", "MAX_DECIMAL_EXPONENT",
    "MAX_DECIMAL_TEXT", "MAX_OP_ID", "MIN_DECIMAL_EXPONENT", "MUTATING_ADMIN", "DecimalCache",
    "admin_value_from_wire", "check_decimal", "decode", "decode_body", "encode", "encode_body",
    "execute_result_outcomes", "item_from_wire", "item_to_wire", "pack", "rating_from_prepared",
    "rating_from_wire", "session_from_wire",
    "session_to_wire", "short", "subscriber_from_wire", "subscriber_to_wire", "tx_from_wire",
    "tx_to_wire", "unpack",
]
