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
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final, NamedTuple

import msgpack

from . import messages as m
from .errors import MAX_ERROR_TEXT, BadBody, ErrorCode, InvalidMessage, ProtocolError
from .frames import Frame, encode_frame
from .money import CURRENCY_RULE, is_currency

EXT_DECIMAL: Final = 1
MAX_DECIMAL_EXPONENT: Final = 24     # |value| < 10**25
MIN_DECIMAL_EXPONENT: Final = -18    # at most 18 fractional digits
MAX_DECIMAL_TEXT: Final = 64         # characters of a decimal's text (more than the range needs)


# ------------------------------------------------------------------------ msgpack level

# Hot names as Final aliases: in the compiled build a Final module constant is a C static,
# any other global (imported names included) a dict lookup per use. Messages are built
# with tuple.__new__: a NamedTuple's own __new__ is interpreted Python, even when compiled.
_new_tuple: Final = tuple.__new__
_ExtType: Final = msgpack.ExtType
_DECIMAL: Final = Decimal
_DATETIME: Final = dt.datetime
_EXECUTE: Final = m.Execute
_SUB_REQUEST: Final = m.SubRequest
_ITEM: Final = m.ChargeableItem
_TRANSACTION: Final = m.Transaction
_RATING: Final = m.RatingResult
_OUTCOME: Final = m.Outcome
_EXECUTE_RESULT: Final = m.ExecuteResult


# The codec's encoding cache: a decimal's extension object by the decimal's text. Amounts
# repeat (prices, "0.00", the same quota's charge), and building an ExtType costs more
# than a dict lookup. Bound: EXT_BOUND entries; eviction: the table is cleared when a new
# entry would pass it. ExtTypes are immutable tuples, safe to share.
EXT_BOUND: Final = 4096
_EXT_BY_TEXT: Final[dict[str, object]] = {}


def _default(obj: object) -> object:
    kind = type(obj)
    if kind is _DECIMAL:
        text = str(obj)
        ext = _EXT_BY_TEXT.get(text)
        if ext is None:
            wire = format(obj, "f") if "E" in text else text   # never an exponent
            # ExtType's own __new__ validates in Python; this is hot
            ext = _new_tuple(_ExtType, (EXT_DECIMAL, wire.encode("ascii")))
            if len(_EXT_BY_TEXT) >= EXT_BOUND:
                _EXT_BY_TEXT.clear()
            _EXT_BY_TEXT[text] = ext
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


# ------------------------------------------------------------------------ field checks

def short(value: object, limit: int = 40) -> str:
    """repr of a peer's value, cut short: error messages never echo a whole frame."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class _Keys(NamedTuple):
    """The fields of a map: those it must have, and all it may have."""

    required: frozenset[str]
    allowed: frozenset[str]


def _keys(required: Iterable[str] = (), optional: Iterable[str] = ()) -> _Keys:
    """Built once per message kind at import: a frozenset in a call is built per call."""
    must = frozenset(required)
    return _Keys(must, must | frozenset(optional))


def _fields(obj: object, spec: _Keys, what: str) -> dict[str, Any]:
    if type(obj) is not dict:
        raise InvalidMessage(f"{what} must be a map")
    keys = obj.keys()
    if not keys <= spec.allowed:
        _non_str_key(keys, what)
        unknown = sorted(keys - spec.allowed)
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise InvalidMessage(f"{what}: unknown field(s) "
                             f"{', '.join(short(k) for k in unknown[:5])}{more}")
    if not spec.required <= keys:
        raise InvalidMessage(f"{what}: missing field(s) {sorted(spec.required.difference(keys))}")
    return obj


def _too_long(what: str, limit: int) -> InvalidMessage:
    return InvalidMessage(f"{what} is longer than {limit} characters", ErrorCode.STRING_TOO_LONG)


def _id(value: object, what: str) -> str:
    if type(value) is not str or not value or len(value) > m.MAX_ID_LENGTH:
        if type(value) is str and value:
            raise _too_long(what, m.MAX_ID_LENGTH)
        raise InvalidMessage(f"{what} must be a non-empty string of at most "
                             f"{m.MAX_ID_LENGTH} characters")
    return value


def _opt_id(value: object, what: str) -> str | None:
    return None if value is None else _id(value, what)


def _text(value: object, what: str) -> str:
    if type(value) is not str or len(value) > m.MAX_STRING_LENGTH:
        if type(value) is str:
            raise _too_long(what, m.MAX_STRING_LENGTH)
        raise InvalidMessage(f"{what} must be a string of at most {m.MAX_STRING_LENGTH} "
                             "characters")
    return value


def _int(value: object, what: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise InvalidMessage(f"{what} must be an integer in {low}..{high}")
    return value


def _bool(value: object, what: str) -> bool:
    if type(value) is not bool:
        raise InvalidMessage(f"{what} must be a boolean")
    return value


def _dec(value: object, what: str) -> Decimal:
    if type(value) is not Decimal:
        raise InvalidMessage(f"{what} must be a decimal (extension type {EXT_DECIMAL})")
    return value


def _time(value: object, what: str) -> dt.datetime:
    if type(value) is not dt.datetime:
        raise InvalidMessage(f"{what} must be a timestamp")
    return value


def _bin(value: object, what: str, limit: int,
         code: ErrorCode = ErrorCode.INVALID_REQUEST) -> bytes:
    if type(value) is not bytes or len(value) > limit:
        raise InvalidMessage(f"{what} must be binary of at most {limit} bytes",
                             code if type(value) is bytes else None)
    return value


MAX_OP_ID: Final = 64  # bytes of an operation id


def _op_id(value: object, what: str = "operation id") -> bytes:
    if type(value) is not bytes or not 1 <= len(value) <= MAX_OP_ID:
        raise InvalidMessage(f"{what} (op) must be binary of 1 to {MAX_OP_ID} bytes"
                             + (" (got 0 bytes)" if value == b"" else ""))
    return value


def _enum(enum: type[Any], value: object, what: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise InvalidMessage(f"{what} must be one of {[e.value for e in enum]}") from None


def _lookup(table: dict[Any, Any], value: object, what: str) -> Any:
    """An enum member by its wire value, by dict lookup (an Enum call is 10x slower)."""
    try:
        return table[value]
    except (KeyError, TypeError):
        raise InvalidMessage(f"{what} must be one of {sorted(map(str, table))}") from None


def _table(enum: type[Any]) -> dict[Any, Any]:
    return {member.value: member for member in enum}


_KINDS: Final = _table(m.ContainerKind)
_ACTIONS: Final = _table(m.Action)
_RESOLUTIONS: Final = _table(m.Resolution)
_RESULT_TYPES: Final = _table(m.ResultType)
_TX_KINDS = _table(m.TxKind)
_TX_REASONS = _table(m.TxReason)


def _list(value: object, what: str, limit: int,
          code: ErrorCode = ErrorCode.INVALID_REQUEST) -> list[Any]:
    if type(value) is not list or len(value) > limit:
        raise InvalidMessage(f"{what} must be an array of at most {limit} elements",
                             code if type(value) is list else None)
    return value


def _dec_map(value: object, what: str) -> dict[str, Decimal]:
    """A counters map: name -> units, decimal or int (an int becomes a Decimal here)."""
    if type(value) is not dict or len(value) > m.MAX_PROPERTIES:
        raise InvalidMessage(f"{what} must be a map of at most {m.MAX_PROPERTIES} entries",
                             ErrorCode.TOO_MANY_PROPERTIES if type(value) is dict else None)
    for key, units in value.items():
        if type(key) is not str:
            _non_str_key((key,), what)
        _id(key, f"{what} key")
        if type(units) is int:
            value[key] = Decimal(units)
        elif type(units) is not Decimal:
            raise InvalidMessage(f"{what}[{short(key)}] must be a decimal (extension type "
                                 f"{EXT_DECIMAL}) or an integer")
    return value


# ------------------------------------------------------------------------ value types

def item_to_wire(item: m.ChargeableItem | None) -> Any:
    """A chargeable item as [name, {property: value}] (it already is that tuple)."""
    return item


# What msgpack decodes is already in range: ints fit 64 bits, decimals passed
# check_decimal in the extension hook, timestamps are aware. Only types and lengths are left.
_PROPERTY_TYPES: Final = frozenset({int, Decimal, bool, dt.datetime})


def item_from_wire(obj: object, what: str = "item") -> m.ChargeableItem | None:
    if obj is None:
        return None
    if type(obj) is not list or len(obj) != 2:
        raise InvalidMessage(f"{what} must be [name, {{properties}}]")
    name, props = obj
    if type(props) is not dict:
        raise InvalidMessage(f"{what} must be [name, {{properties}}]")
    if len(props) > m.MAX_PROPERTIES:
        raise InvalidMessage(f"{what} has more than {m.MAX_PROPERTIES} properties",
                             ErrorCode.TOO_MANY_PROPERTIES)
    if name is not None and (type(name) is not str or not name
                             or len(name) > m.MAX_ID_LENGTH):
        if type(name) is str and name:
            raise _too_long(f"{what} name", m.MAX_ID_LENGTH)
        raise InvalidMessage(f"{what}: the name must be nil or a non-empty string")
    for key, value in props.items():
        kind = type(value)
        bad_value = kind not in _PROPERTY_TYPES and \
            (kind is not str or len(value) > m.MAX_STRING_LENGTH)
        if bad_value or type(key) is not str or not key or len(key) > m.MAX_ID_LENGTH:
            _bad_property(what, key, value)
    return _new_tuple(_ITEM, (name, props))


def _bad_property(what: str, key: object, value: object) -> None:
    """Raise the precise error for a property the fast check refused."""
    if type(key) is not str:
        _non_str_key((key,), f"{what} properties")
    if type(key) is str and len(key) > m.MAX_ID_LENGTH:
        raise _too_long(f"{what} property name", m.MAX_ID_LENGTH)
    if type(value) is str and len(value) > m.MAX_STRING_LENGTH:
        raise _too_long(f"{what} property {short(key)}", m.MAX_STRING_LENGTH)
    try:
        m.check_property(key, value)
    except (TypeError, ValueError) as exc:
        raise InvalidMessage(f"{what}: {exc}") from None


def tx_to_wire(tx: m.Transaction) -> Any:
    """A journal entry as the array of its fields (it already is that tuple)."""
    return tx


_NO_COUNTERS: Final[Any] = m.Transaction._field_defaults["counters"]
# the result decoders run for every reply a client reads (Final: see the top of the module)
_TX_KIND_OF: Final[dict[Any, Any]] = _TX_KINDS
_TX_REASON_OF: Final[dict[Any, Any]] = _TX_REASONS


def tx_from_wire(obj: object) -> m.Transaction:
    if type(obj) is not list or len(obj) != 10:
        raise InvalidMessage("a transaction is an array of 10 fields")
    tid, time, user, session, rid, kind, reason, amount, currency, counters = obj
    if type(tid) is not int or type(time) is not _DATETIME or type(user) is not str \
            or (session is not None and type(session) is not str) \
            or (rid is not None and type(rid) is not str) \
            or type(amount) is not _DECIMAL or type(currency) is not str \
            or type(kind) is not str or type(reason) is not str:
        raise InvalidMessage(f"transaction {tid!r}: a field has the wrong type")
    # members are non-empty strings, so `or` falls to _lookup (and its error) only on a miss
    tx_kind = _TX_KIND_OF.get(kind) or _lookup(_TX_KINDS, kind, "kind")
    tx_reason = _TX_REASON_OF.get(reason) or _lookup(_TX_REASONS, reason, "reason")
    return _new_tuple(_TRANSACTION, (
        tid, time, user, session, rid, tx_kind, tx_reason, amount, currency,
        _dec_map(counters, "counters") if counters else _NO_COUNTERS))


def rating_from_wire(obj: object, what: str) -> m.RatingResult | None:
    if obj is None:
        return None
    if type(obj) is not list or len(obj) != 3:
        raise InvalidMessage(f"{what} must be [amount, currency, [transaction, ...]]")
    amount, currency, txs = obj
    if type(amount) is not _DECIMAL or type(currency) is not str or type(txs) is not list:
        raise InvalidMessage(f"{what} must be [amount, currency, [transaction, ...]]")
    return _new_tuple(_RATING, (
        amount, currency, tuple([tx_from_wire(t) for t in txs]) if txs else ()))


def subscriber_to_wire(s: m.Subscriber) -> dict[str, Any]:
    return {"user": s.user_id, "currency": s.currency, "balance": s.balance,
            "reserved": s.reserved, "available": s.available, "counters": s.counters,
            "counters_reserved": s.counters_reserved}


_SUB_KEYS = frozenset({"user", "currency", "balance", "reserved", "available", "counters",
                       "counters_reserved"})

_K_SUBSCRIBER = _keys(_SUB_KEYS)


def subscriber_from_wire(obj: object) -> m.Subscriber:
    d = _fields(obj, _K_SUBSCRIBER, "subscriber")
    return m.Subscriber(_id(d["user"], "user"), _id(d["currency"], "currency"),
                        _dec(d["balance"], "balance"), _dec(d["reserved"], "reserved"),
                        _dec(d["available"], "available"), _dec_map(d["counters"], "counters"),
                        _dec_map(d["counters_reserved"], "counters_reserved"))


def session_to_wire(s: m.SessionInfo) -> dict[str, Any]:
    return {"session": s.session_id, "user": s.user_id, "service": s.service_id,
            "created": s.created_at, "listener": s.listener_id, "external": s.external_data,
            "reservations": [
                {"rid": r.reservation_id, "state": r.state, "item": item_to_wire(r.item),
                 "amount": r.amount, "expires": r.expires_at,
                 "resolution": r.default_resolution, "counters": r.counters,
                 "inverse": r.property_to_inverse} for r in s.reservations]}


_SESSION_KEYS = frozenset({"session", "user", "service", "created", "listener", "external",
                           "reservations"})
_RES_INFO_KEYS = frozenset({"rid", "state", "item", "amount", "expires", "resolution",
                            "counters", "inverse"})

_K_SESSION = _keys(_SESSION_KEYS)
_K_RES_INFO = _keys(_RES_INFO_KEYS)


def session_from_wire(obj: object) -> m.SessionInfo:
    d = _fields(obj, _K_SESSION, "session")
    reservations = []
    for raw in _list(d["reservations"], "reservations", 1 << 20):
        r = _fields(raw, _K_RES_INFO, "reservation")
        reservations.append(m.ReservationInfo(
            _id(r["rid"], "rid"), _id(r["state"], "state"), item_from_wire(r["item"]),
            _dec(r["amount"], "amount"), _time(r["expires"], "expires"),
            _enum(m.Resolution, r["resolution"], "resolution"),
            _dec_map(r["counters"], "counters"), _opt_id(r["inverse"], "inverse")))
    listener = d["listener"]
    external = d["external"]
    return m.SessionInfo(
        _id(d["session"], "session"), _id(d["user"], "user"), _id(d["service"], "service"),
        _time(d["created"], "created"),
        None if listener is None else _int(listener, "listener", 1, m.MAX_LISTENER_ID),
        None if external is None else _bin(external, "external", m.MAX_EXTERNAL_DATA),
        tuple(reservations))


# ------------------------------------------------------------------------ handshake etc.

def _enc_hello(msg: m.Hello) -> dict[str, Any]:
    return {"versions": list(msg.versions), "client": msg.client_name, "user": msg.user,
            "password": msg.password}


_HELLO_OPT = frozenset({"client", "user", "password"})

_K_HELLO = _keys({"versions"}, _HELLO_OPT)


def _dec_hello(obj: object) -> m.Hello:
    d = _fields(obj, _K_HELLO, "HELLO")
    versions = tuple(_int(v, "version", 0, 0xFFFF)
                     for v in _list(d["versions"], "versions", 16))
    client, user, password = d.get("client"), d.get("user"), d.get("password")
    return m.Hello(versions, None if client is None else _text(client, "client"),
                   _opt_id(user, "user"), None if password is None else _text(password, "password"))


def _enc_hello_ok(msg: m.HelloOk) -> dict[str, Any]:
    return {"version": msg.version, "server": msg.server, "heartbeat": msg.heartbeat,
            "max_frame": msg.max_frame, "max_in_flight": msg.max_in_flight,
            "roles": list(msg.roles)}


_HELLO_OK_KEYS = frozenset({"version", "server", "heartbeat", "max_frame", "max_in_flight",
                            "roles"})

_K_HELLO_OK = _keys(_HELLO_OK_KEYS)


def _dec_hello_ok(obj: object) -> m.HelloOk:
    d = _fields(obj, _K_HELLO_OK, "HELLO_OK")
    heartbeat = d["heartbeat"]
    if type(heartbeat) not in (int, float) or not 0 < heartbeat < 86400:
        raise InvalidMessage("heartbeat must be a number of seconds in (0, 86400)")
    return m.HelloOk(_int(d["version"], "version", 0, 0xFFFF), _text(d["server"], "server"),
                     float(heartbeat), _int(d["max_frame"], "max_frame", 1, 2**32 - 1),
                     _int(d["max_in_flight"], "max_in_flight", 1, 2**32 - 1),
                     tuple(_id(r, "role") for r in _list(d["roles"], "roles", 16)))

_K_EMPTY = _keys()


def _empty(cls: type[Any], name: str) -> Callable[[object], Any]:
    def decode(obj: object) -> Any:
        _fields(obj, _K_EMPTY, name)
        return cls()
    return decode


def _enc_empty(msg: object) -> dict[str, Any]:
    return {}

_K_GOODBYE = _keys((), {"reason"})


def _dec_goodbye(obj: object) -> m.Goodbye:
    d = _fields(obj, _K_GOODBYE, "GOODBYE")
    return m.Goodbye(_text(d.get("reason", ""), "reason"))

_K_ERROR = _keys({"code"}, {"message"})


def _dec_error(obj: object) -> m.Error:
    d = _fields(obj, _K_ERROR, "ERROR")
    return m.Error(_id(d["code"], "code"), _text(d.get("message", ""), "message"))


# ------------------------------------------------------------------------ containers

# What each action refuses (indexes in the sub-request array, and their names)
_SUB_REFUSES: Final = {
    m.Action.RESERVE: ((3, "next"),),
    m.Action.CONFIRM: ((3, "next"), (4, "ttl"), (5, "resolution"), (6, "inverse")),
    m.Action.CANCEL: ((2, "item"), (3, "next"), (4, "ttl"), (5, "resolution"), (6, "inverse")),
    m.Action.CONFIRM_AND_RESERVE: (),
}
_MAX_TTL: Final = 400 * 86400.0


def _dec_sub(obj: object) -> m.SubRequest:
    if type(obj) is not list or len(obj) != 7:
        raise InvalidMessage("a sub-request is [action, rid, item, next, ttl, resolution, "
                             "inverse]")
    action, rid, item, next_item, ttl, resolution, inverse = obj
    kind = _lookup(_ACTIONS, action, "action")
    for index, name in _SUB_REFUSES[kind]:
        if obj[index] is not None:
            raise InvalidMessage(f"{kind} does not take {name}")
    if ttl is not None:
        if type(ttl) is Decimal:
            ttl = float(ttl)
        if type(ttl) not in (int, float) or not math.isfinite(ttl) or abs(ttl) > _MAX_TTL:
            raise InvalidMessage(f"ttl must be a finite number of seconds, |ttl| <= {_MAX_TTL}")
    return _new_tuple(_SUB_REQUEST, (
        kind, _id(rid, "rid"), item_from_wire(item), item_from_wire(next_item, "next"), ttl,
        None if resolution is None else _lookup(_RESOLUTIONS, resolution, "resolution"),
        _opt_id(inverse, "inverse")))


def _enc_execute(msg: m.Execute) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "op": msg.operation_id, "kind": msg.kind, "user": msg.user_id,
        "service": msg.service_id, "session": msg.session_id, "subs": msg.subs}
    if msg.listener_id is not None:
        wire["listener"] = msg.listener_id
    if msg.external_data is not None:
        wire["external"] = msg.external_data
    if msg.result_type is not None:
        wire["result_type"] = msg.result_type
    if msg.cleanup_result_type is not None:
        wire["cleanup_result_type"] = msg.cleanup_result_type
    if msg.filter_transaction is not None:
        wire["filter"] = msg.filter_transaction
    return wire


_EXEC_REQ = frozenset({"op", "kind", "user", "service", "session", "subs"})
_EXEC_OPT = frozenset({"listener", "external", "result_type", "cleanup_result_type", "filter"})

_K_EXECUTE: Final = _keys(_EXEC_REQ, _EXEC_OPT)
_START: Final = m.ContainerKind.START
_STOP: Final = m.ContainerKind.STOP
_ALLOWED_ACTIONS: Final = m.ALLOWED_ACTIONS


def _dec_execute(obj: object) -> m.Execute:
    d = _fields(obj, _K_EXECUTE, "EXECUTE")
    kind = _lookup(_KINDS, d["kind"], "kind")
    subs = tuple(_dec_sub(s) for s in _list(d["subs"], "subs", m.MAX_SUBREQUESTS,
                                            ErrorCode.CONTAINER_TOO_LARGE))
    allowed = _ALLOWED_ACTIONS[kind]
    for s in subs:
        if s.action not in allowed:
            raise InvalidMessage(f"a {kind} container does not allow {s.action}")
    listener = d.get("listener")
    if listener is not None:
        if kind is not _START:
            raise InvalidMessage("only a start container sets a listener id")
        _int(listener, "listener", 1, m.MAX_LISTENER_ID)
    external = d.get("external")
    if external is not None:
        if kind is _STOP:
            raise InvalidMessage("a stop container does not set external data")
        _bin(external, "external data", m.MAX_EXTERNAL_DATA,
             ErrorCode.EXTERNAL_DATA_TOO_LARGE)
    rt, crt, filt = d.get("result_type"), d.get("cleanup_result_type"), d.get("filter")
    return _new_tuple(_EXECUTE, (
        _op_id(d["op"]), kind, _id(d["user"], "user"),
        _id(d["service"], "service"), _id(d["session"], "session"), subs, listener, external,
        None if rt is None else _lookup(_RESULT_TYPES, rt, "result_type"),
        None if crt is None else _lookup(_RESULT_TYPES, crt, "cleanup_result_type"),
        None if filt is None else _bool(filt, "filter")))


def _dec_outcome(obj: object) -> m.Outcome:
    if type(obj) is not list or len(obj) != 9:
        raise InvalidMessage("an outcome is an array of 9 fields")
    rid, error, message, cancel, confirm, reserve, granted, expires, below = obj
    if type(rid) is not str or (error is not None and type(error) is not str) \
            or (message is not None and type(message) is not str) or type(below) is not bool \
            or (expires is not None and type(expires) is not _DATETIME):
        raise InvalidMessage(f"outcome {rid!r}: a field has the wrong type")
    return _new_tuple(_OUTCOME, (
        rid, error, message,
        None if cancel is None else rating_from_wire(cancel, "cancel"),
        None if confirm is None else rating_from_wire(confirm, "confirm"),
        None if reserve is None else rating_from_wire(reserve, "reserve"),
        None if granted is None else item_from_wire(granted, "granted"), expires, below))


def _enc_execute_result(msg: m.ExecuteResult) -> dict[str, Any]:
    return {"session": msg.session_id, "results": msg.outcomes}

_K_EXECUTE_RESULT: Final = _keys({"session", "results"})


def _dec_execute_result(obj: object) -> m.ExecuteResult:
    # the common case, a map of exactly the two fields, without _fields' set algebra
    if type(obj) is dict and len(obj) == 2 and "session" in obj and "results" in obj:
        d: dict[str, Any] = obj
    else:
        d = _fields(obj, _K_EXECUTE_RESULT, "EXECUTE_RESULT")
    outcomes = _list(d["results"], "results", 1 << 20)
    session = _id(d["session"], "session")
    return _new_tuple(_EXECUTE_RESULT,
                      (session, tuple([_dec_outcome(o) for o in outcomes])))


# ------------------------------------------------------------------------ operator

def _opt(check: Callable[[object, str], Any]) -> Callable[[object, str], Any]:
    def optional(value: object, what: str) -> Any:
        return None if value is None else check(value, what)
    return optional


def _currency(value: object, what: str) -> str:
    if not is_currency(value):
        raise InvalidMessage(f"{what} must be {CURRENCY_RULE}")
    return value  # type: ignore[return-value]


def _limit(value: object, what: str) -> int:
    return _int(value, what, 1, 1 << 20)


def _after(value: object, what: str) -> int:
    return _int(value, what, 0, 2**63)


def _rule(value: object, what: str) -> dict[str, Any]:
    """A fault rule map (the server checks its fields): text keys, scalar values."""
    if type(value) is not dict or len(value) > 32:
        raise InvalidMessage(f"{what} must be a map of at most 32 fields")
    for key, item in value.items():
        _text(key, f"{what} key")
        if item is not None and type(item) not in (str, int, float, bool):
            raise InvalidMessage(f"{what}.{key} must be a string, number or boolean")
        if type(item) is str:
            _text(item, f"{what}.{key}")
    return value


def _seconds(value: object, what: str) -> float:
    if type(value) not in (int, float) or not 0 <= value <= 2**40:  # type: ignore[operator]
        raise InvalidMessage(f"{what} must be a number of seconds >= 0")
    return float(value)  # type: ignore[arg-type]


def _time_or_text(value: object, what: str) -> object:
    return _text(value, what) if type(value) is str else _time(value, what)


#: command -> {arg: (checker, required)}; the server implements each of them.
ADMIN_COMMANDS: dict[str, dict[str, tuple[Callable[[object, str], Any], bool]]] = {
    "create_subscriber": {"user": (_id, True), "balance": (_dec, True),
                          "currency": (_currency, False), "counters": (_opt(_dec_map), False)},
    "get_subscriber": {"user": (_id, True)},
    "top_up": {"user": (_id, True), "amount": (_dec, True)},
    "find_sessions": {"user": (_opt(_id), False), "session": (_opt(_id), False),
                      "limit": (_opt(_limit), False)},
    "cancel_session": {"session": (_id, True)},
    "transactions": {"user": (_opt(_id), False), "session": (_opt(_id), False),
                     "after": (_opt(_after), False), "limit": (_opt(_limit), False)},
    "request_renewal": {"session": (_id, True), "rid": (_id, True)},
    "stats": {},
    # test controls (PROTOCOL.md "Test controls")
    "fault_add": {"rule": (_rule, True)},
    "fault_list": {},
    "fault_remove": {"id": (lambda v, w: _int(v, w, 1, 2**31), True)},
    "fault_clear": {},
    "record_get": {"user": (_opt(_id), False), "session": (_opt(_id), False),
                   "kind": (_opt(_text), False), "type": (_opt(_text), False),
                   "direction": (_opt(_text), False), "since": (_opt(_time), False),
                   "until": (_opt(_time), False), "after": (_opt(_after), False),
                   "limit": (_opt(_limit), False)},
    "record_clear": {},
    "clock_get": {},
    "clock_advance": {"seconds": (_seconds, True)},
    "clock_set": {"time": (_time_or_text, True)},
}
#: subscriber administration (list, delete, adjust, counters); README "Operator API"
ADMIN_COMMANDS.update({
    "list_subscribers": {"prefix": (_opt(_id), False), "currency": (_opt(_currency), False),
                         "after": (_opt(_id), False), "limit": (_opt(_limit), False)},
    "delete_subscriber": {"user": (_id, True), "force": (_opt(_bool), False)},
    "adjust": {"user": (_id, True), "amount": (_dec, True), "reason": (_id, True)},
    "set_counter": {"user": (_id, True), "counter": (_id, True), "units": (_dec, True),
                    "reason": (_opt(_id), False)},
    "reset_counter": {"user": (_id, True), "counter": (_id, True),
                      "reason": (_opt(_id), False)},
})

#: the commands that change state: a client gives each an operation id, and the server
#: answers a repeat of that id with the first outcome (exactly once)
MUTATING_ADMIN = frozenset({"create_subscriber", "top_up", "cancel_session",
                            "delete_subscriber", "adjust", "set_counter", "reset_counter"})


_CONTROLS = ("fault_", "record_", "clock_")   # the test controls, named by prefix
_KNOWN_ADMIN = ", ".join([c for c in sorted(ADMIN_COMMANDS) if not c.startswith(_CONTROLS)]
                         + [f"{prefix}*" for prefix in _CONTROLS])


def _enc_admin(msg: m.AdminRequest) -> dict[str, Any]:
    wire: dict[str, Any] = {"cmd": msg.command, "args": msg.args}
    if msg.operation_id is not None:
        wire["op"] = msg.operation_id
    return wire

_K_ADMIN = _keys({"cmd", "args"}, {"op"})


def _dec_admin(obj: object) -> m.AdminRequest:
    d = _fields(obj, _K_ADMIN, "ADMIN")
    command = d["cmd"]
    schema = ADMIN_COMMANDS.get(command) if type(command) is str else None
    if schema is None:
        raise InvalidMessage(f"unknown admin command {short(command)}; "
                             f"known: {_KNOWN_ADMIN}")
    args = d["args"]
    if type(args) is not dict:
        raise InvalidMessage("admin args must be a map")
    unknown = args.keys() - schema.keys()
    if unknown:
        _non_str_key(args.keys(), f"{command} args")
        raise InvalidMessage(f"{command}: unknown argument(s) {sorted(unknown)}")
    for name, (check, required) in schema.items():
        if name in args:
            check(args[name], f"{command}.{name}")
        elif required:
            raise InvalidMessage(f"{command}: missing argument {name!r}")
    op = d.get("op")
    return m.AdminRequest(command, args, None if op is None else _op_id(op))

_K_ADMIN_RESULT = _keys((), {"value"})


def _dec_admin_result(obj: object) -> m.AdminResult:
    d = _fields(obj, _K_ADMIN_RESULT, "ADMIN_RESULT")
    return m.AdminResult(d.get("value"))


# ------------------------------------------------------------------------ renewal

_K_LISTEN = _keys({"listener"})


def _dec_listener(cls: type[Any], name: str) -> Callable[[object], Any]:
    def decode(obj: object) -> Any:
        d = _fields(obj, _K_LISTEN, name)
        return cls(_int(d["listener"], "listener", 1, m.MAX_LISTENER_ID))
    return decode


def _enc_notification(n: m.Notification) -> dict[str, Any]:
    return {"id": n.notification_id, "listener": n.listener_id, "session": n.session_id,
            "rid": n.reservation_id, "user": n.user_id, "service": n.service_id,
            "reason": n.reason, "expires": n.expires_at, "attempt": n.attempt,
            "external": n.external_data}


_NOTIFY_KEYS = frozenset({"id", "listener", "session", "rid", "user", "service", "reason",
                          "expires", "attempt", "external"})

_K_NOTIFY = _keys(_NOTIFY_KEYS)


def _dec_notification(obj: object) -> m.Notification:
    d = _fields(obj, _K_NOTIFY, "NOTIFY")
    external = d["external"]
    return m.Notification(
        _int(d["id"], "id", 0, 2**63), _int(d["listener"], "listener", 1, m.MAX_LISTENER_ID),
        _id(d["session"], "session"), _id(d["rid"], "rid"), _id(d["user"], "user"),
        _id(d["service"], "service"), _id(d["reason"], "reason"),
        _time(d["expires"], "expires"), _int(d["attempt"], "attempt", 1, 1 << 20),
        None if external is None else _bin(external, "external", m.MAX_EXTERNAL_DATA))

_K_ACK = _keys({"id"}, {"confirm"})


def _dec_ack(obj: object) -> m.Ack:
    d = _fields(obj, _K_ACK, "ACK")
    return m.Ack(_int(d["id"], "id", 0, 2**63), _bool(d.get("confirm", False), "confirm"))

_K_ACK_OK = _keys({"status"})


def _dec_ack_ok(obj: object) -> m.AckOk:
    d = _fields(obj, _K_ACK_OK, "ACK_OK")
    return m.AckOk(_id(d["status"], "status"))


# ------------------------------------------------------------------------ dispatch

T = m.MsgType
_ENCODERS: Final[dict[type[Any], tuple[int, Callable[[Any], Any]]]] = {
    m.Hello: (T.HELLO, _enc_hello),
    m.HelloOk: (T.HELLO_OK, _enc_hello_ok),
    m.Ping: (T.PING, _enc_empty),
    m.Pong: (T.PONG, _enc_empty),
    m.Goodbye: (T.GOODBYE, lambda g: {"reason": g.reason}),
    m.Error: (T.ERROR, lambda e: {"code": str(e.code), "message": e.message[:MAX_ERROR_TEXT]}),
    m.Execute: (T.EXECUTE, _enc_execute),
    m.ExecuteResult: (T.EXECUTE_RESULT, _enc_execute_result),
    m.AdminRequest: (T.ADMIN, _enc_admin),
    m.AdminResult: (T.ADMIN_RESULT, lambda r: {"value": r.value}),
    m.Listen: (T.LISTEN, lambda x: {"listener": x.listener_id}),
    m.ListenOk: (T.LISTEN_OK, _enc_empty),
    m.Unlisten: (T.UNLISTEN, lambda x: {"listener": x.listener_id}),
    m.UnlistenOk: (T.UNLISTEN_OK, _enc_empty),
    m.Notification: (T.NOTIFY, _enc_notification),
    m.Ack: (T.ACK, lambda a: {"id": a.notification_id, "confirm": a.confirm}),
    m.AckOk: (T.ACK_OK, lambda a: {"status": a.status}),
}

_DECODERS: Final[dict[int, Callable[[object], Any]]] = {
    T.HELLO: _dec_hello,
    T.HELLO_OK: _dec_hello_ok,
    T.PING: _empty(m.Ping, "PING"),
    T.PONG: _empty(m.Pong, "PONG"),
    T.GOODBYE: _dec_goodbye,
    T.ERROR: _dec_error,
    T.EXECUTE: _dec_execute,
    T.EXECUTE_RESULT: _dec_execute_result,
    T.ADMIN: _dec_admin,
    T.ADMIN_RESULT: _dec_admin_result,
    T.LISTEN: _dec_listener(m.Listen, "LISTEN"),
    T.LISTEN_OK: _empty(m.ListenOk, "LISTEN_OK"),
    T.UNLISTEN: _dec_listener(m.Unlisten, "UNLISTEN"),
    T.UNLISTEN_OK: _empty(m.UnlistenOk, "UNLISTEN_OK"),
    T.NOTIFY: _dec_notification,
    T.ACK: _dec_ack,
    T.ACK_OK: _dec_ack_ok,
}


def encode_body(msg: m.Message) -> tuple[int, bytes]:
    """(message type, msgpack body) of a message."""
    msg_type, to_wire = _ENCODERS[type(msg)]
    return msg_type, pack(to_wire(msg))


def encode(msg: m.Message, request_id: int = 0) -> bytes:
    """The whole frame of a message."""
    msg_type, to_wire = _ENCODERS[type(msg)]
    return encode_frame(msg_type, request_id, pack(to_wire(msg)))


def decode_body(msg_type: int, body: bytes, decimals: DecimalCache = DECIMALS) -> m.Message:
    """The message of a frame's type and body; `InvalidMessage` if it is not valid.
    Decimals are decoded through `decimals` (see `DecimalCache`)."""
    decoder = _DECODERS.get(msg_type)
    if decoder is None:
        raise BadBody(f"unknown message type {msg_type:#04x}")
    obj = unpack(body, decimals)
    if type(obj) is not dict:
        raise BadBody(f"the body of a {m.MsgType(msg_type).name} must be a msgpack map, "
                      f"not {_TYPE_NAMES.get(type(obj), type(obj).__name__)}")
    try:
        return decoder(obj)  # type: ignore[no-any-return]
    except BadBody:
        raise
    except InvalidMessage as exc:
        if msg_type == m.MsgType.EXECUTE:
            exc.operation = _execute_key(obj)
        raise


_TYPE_NAMES = {list: "an array", str: "a string", bytes: "binary", int: "an integer",
               float: "a float", bool: "a boolean", type(None): "nil", Decimal: "a decimal",
               dt.datetime: "a timestamp"}


def _execute_key(obj: dict[str, Any]) -> tuple[str, bytes] | None:
    """(user, op) of an EXECUTE map that failed validation, when both are valid (the
    outcome is then remembered for that operation id); None otherwise."""
    try:
        return _id(obj.get("user"), "user"), _op_id(obj.get("op"))
    except ProtocolError:
        return None


def decode(frame: Frame) -> m.Message:
    """The message a frame carries."""
    return decode_body(frame.type, frame.body)


def admin_value_from_wire(command: str, value: Any) -> Any:
    """Typed value of an admin result, by the command it answers."""
    if command in ("create_subscriber", "get_subscriber", "top_up", "adjust", "set_counter",
                   "reset_counter"):
        return subscriber_from_wire(value)
    if command == "list_subscribers":
        return [subscriber_from_wire(s) for s in _list(value, "subscribers", 1 << 20)]
    if command == "find_sessions":
        return [session_from_wire(s) for s in _list(value, "sessions", 1 << 20)]
    if command in ("transactions", "cancel_session", "delete_subscriber"):
        return [tx_from_wire(t) for t in _list(value, "transactions", 1 << 20)]
    return value
