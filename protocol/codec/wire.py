"""The msgpack level: pack and unpack with the decimal extension type and its two caches.

- Decimal: msgpack extension type 1, payload the ASCII text of the number ("10.50"),
  always in plain notation ("1000", not "1E+3"); `DecimalCache` keeps decoded ones,
  `_EXT_BY_TEXT` encoded ones.
- datetime: the standard msgpack timestamp extension (type -1), always UTC.
- Bytes that are not exactly one msgpack value with string map keys are `BadBody`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import msgpack

from ..errors import BadBody, InvalidMessage

EXT_DECIMAL: Final = 1
MAX_DECIMAL_EXPONENT: Final = 24     # |value| < 10**25
MIN_DECIMAL_EXPONENT: Final = -18    # at most 18 fractional digits
MAX_DECIMAL_TEXT: Final = 64         # characters of a decimal's text (more than the range needs)

# Hot names as Final aliases: in the compiled build a Final module constant is a C static,
# any other global (imported names included) a dict lookup per use. So each module of the
# codec has its own aliases of the names it uses on the hot path. Messages are built with
# tuple.__new__: a NamedTuple's own __new__ is interpreted Python, even when compiled.
_new_tuple: Final = tuple.__new__
_ExtType: Final = msgpack.ExtType
_DECIMAL: Final = Decimal


# The codec's encoding cache: a decimal's extension object by the decimal's text. Amounts
# repeat (prices, "0.00", the same quota's charge), and building an ExtType costs more
# than a dict lookup. Bound: EXT_BOUND entries; eviction: the table is cleared when a new
# entry would pass it. ExtTypes are immutable tuples, safe to share.
EXT_BOUND: Final = 4096
_EXT_BY_TEXT: Final[dict[str, object]] = {}
# In front of it, the same by the decimal object (its id -> (the decimal, its extension)):
# a server's held amounts are shared objects and a result repeats each amount in its
# transaction, so most decimals packed were packed a moment before, and this lookup costs
# a quarter of str() and a text lookup. An entry holds its decimal, so that id is not
# reused while the entry lives. Same bound and eviction.
_EXT_BY_ID: Final[dict[int, tuple[object, object]]] = {}


def _default(obj: object) -> object:
    kind = type(obj)
    if kind is _DECIMAL:
        key = id(obj)
        known = _EXT_BY_ID.get(key)
        if known is not None and known[0] is obj:
            return known[1]
        text = str(obj)
        ext = _EXT_BY_TEXT.get(text)
        if ext is None:
            wire = format(obj, "f") if "E" in text else text   # never an exponent
            # ExtType's own __new__ validates in Python; this is hot
            ext = _new_tuple(_ExtType, (EXT_DECIMAL, wire.encode("ascii")))
            if len(_EXT_BY_TEXT) >= EXT_BOUND:
                _EXT_BY_TEXT.clear()
            _EXT_BY_TEXT[text] = ext
        if len(_EXT_BY_ID) >= EXT_BOUND:
            _EXT_BY_ID.clear()
        _EXT_BY_ID[key] = (obj, ext)
        return ext
    if kind is dt.datetime:    # aware ones the packer encodes itself (datetime=True)
        raise ValueError("cannot encode a naive datetime; use an aware one (UTC)")
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} on the wire")


def check_decimal(value: Decimal) -> Decimal:
    """Refuse non-finite decimals and those outside the wire's range (ValueError)."""
    if not value.is_finite():
        raise ValueError(f"decimal {value} is not finite")
    if value:
        exponent = value.as_tuple().exponent
        assert isinstance(exponent, int)
        if exponent < MIN_DECIMAL_EXPONENT or value.adjusted() > MAX_DECIMAL_EXPONENT:
            raise ValueError(f"decimal {value} is outside the supported range "
                             f"(< 1E{MAX_DECIMAL_EXPONENT + 1}, at most "
                             f"{-MIN_DECIMAL_EXPONENT} fractional digits)")
    return value


# Plain decimal text of at most 19 characters is within range by construction
# (below 1E19, at most 18 fractional digits): no need for check_decimal's as_tuple().
_PLAIN_DECIMAL = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?")


class DecimalCache:
    """The codec's decoding cache: decoded decimals by their wire text. Amounts repeat (prices,
    the balances of a busy subscriber), and parsing one costs more than a dict lookup.

    Bound: `bound` entries; eviction: when a new entry would pass the bound, the table is
    cleared. Only short plain-notation texts are kept. Decimals are immutable, so sharing
    one between messages and threads is safe. `DECIMALS` is the instance `unpack` and
    `decode_body` use unless given another (e.g. one per server, to keep them apart).
    """

    __slots__ = ("bound", "ext_hook", "table")

    def __init__(self, bound: int = 4096) -> None:
        self.bound = bound
        self.table: dict[bytes, Decimal] = {}
        table = self.table

        def ext_hook(code: int, data: bytes) -> object:   # a closure: the fast path
            if code != EXT_DECIMAL:
                raise InvalidMessage(f"unknown msgpack extension type {code}")
            known = table.get(data)
            if known is not None:
                return known
            if len(data) < 20 and _PLAIN_DECIMAL.fullmatch(data):
                value = Decimal(data.decode("ascii"))
                if len(table) >= bound:
                    table.clear()
                table[data] = value
                return value
            return _decimal_from_text(data)

        #: msgpack's ext_hook: decimals through this cache
        self.ext_hook = ext_hook


def _decimal_from_text(data: bytes) -> Decimal:
    """A decimal extension's payload that is not short plain text, checked in full."""
    if len(data) > MAX_DECIMAL_TEXT:
        raise InvalidMessage(f"bad decimal: text longer than {MAX_DECIMAL_TEXT} characters")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidMessage(f"bad decimal: the text {short(data)} is not ASCII") from None
    try:
        return check_decimal(Decimal(text))
    except InvalidOperation:
        raise InvalidMessage(f"bad decimal: {short(text)} is not a number (write it like "
                             "\"10.50\" or \"-3\")") from None
    except ValueError as exc:
        raise InvalidMessage(f"bad decimal: {exc}") from None


DECIMALS = DecimalCache()


# Building a Packer (and its buffer) per message costs more than packing a small one, so
# packers are reused: each call takes one from the pool (list.pop and append are atomic),
# so threads packing at the same moment never share one.
_packers: Final[list[msgpack.Packer]] = []


def pack(obj: object) -> bytes:
    """msgpack with this protocol's extension types (an aware datetime is a timestamp)."""
    try:
        packer = _packers.pop()
    except IndexError:
        packer = msgpack.Packer(default=_default, use_bin_type=True, datetime=True)
    try:
        packed: bytes = packer.pack(obj)
    finally:
        _packers.append(packer)
    return packed


def unpack(body: bytes, decimals: DecimalCache = DECIMALS) -> Any:
    """Inverse of `pack`. A bad value inside a well-formed body (a decimal that is not a
    number, an unknown extension type) is `InvalidMessage`; bytes that are not exactly
    one msgpack value with string map keys are `BadBody`."""
    try:
        return msgpack.unpackb(body, ext_hook=decimals.ext_hook, timestamp=3, raw=False,
                               strict_map_key=True, use_list=True)
    except InvalidMessage:
        raise
    except Exception as exc:  # msgpack raises a zoo of ValueError/TypeError subclasses
        raise BadBody(f"undecodable body: {_msgpack_failure(exc)}") from None


def _msgpack_failure(exc: Exception) -> str:
    """What msgpack's exception says, in plain words."""
    text = str(exc)
    if isinstance(exc, msgpack.ExtraData):
        return "more bytes follow the first msgpack value (a body is exactly one map)"
    if isinstance(exc, msgpack.FormatError):
        return "not msgpack (a byte that starts no msgpack value)"
    if isinstance(exc, msgpack.StackError):
        return "nested deeper than 1024 levels"
    if "incomplete input" in text or "exceeds max_" in text:
        return "the bytes end in the middle of a msgpack value"
    if "not allowed for map key" in text:
        kind = text.split(" is ", maxsplit=1)[0]
        return f"a map key is {kind}, not a string (map keys are strings)"
    if "timestamp" in text.lower():
        return "a timestamp extension with a bad payload"
    return f"not valid msgpack ({text or type(exc).__name__})"


def _non_str_key(keys: Iterable[object], what: str) -> None:
    """Refuse a map with a non-string key (bin keys get this far; others fail in msgpack)."""
    for key in keys:
        if type(key) is not str:
            raise BadBody(f"{what}: the map key {short(key)} is not a string "
                          "(map keys are strings)")


def short(value: object, limit: int = 40) -> str:
    """repr of a peer's value, cut short: error messages never echo a whole frame."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
