"""The value types inside bodies and admin results, to and from their wire form: chargeable
items, journal entries (transactions), rating results, subscribers and sessions."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Final

from .. import messages as m
from ..errors import ErrorCode, InvalidMessage
from .fields import (
    _bin,
    _dec,
    _dec_map,
    _enum,
    _fields,
    _id,
    _int,
    _keys,
    _list,
    _lookup,
    _opt_id,
    _table,
    _time,
    _too_long,
)
from .wire import _non_str_key, short

# Hot names as Final aliases (a C static each in the compiled build; see wire.py)
_new_tuple: Final = tuple.__new__
_DECIMAL: Final = Decimal
_DATETIME: Final = dt.datetime
_ITEM: Final = m.ChargeableItem
_TRANSACTION: Final = m.Transaction
_RATING: Final = m.RatingResult


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


_TX_KINDS = _table(m.TxKind)
_TX_REASONS = _table(m.TxReason)
_NO_COUNTERS: Final[Any] = m.Transaction._field_defaults["counters"]
# the result decoders run for every reply a client reads (Final: see the top of wire.py)
_TX_KIND_OF: Final[dict[Any, Any]] = _TX_KINDS
_TX_REASON_OF: Final[dict[Any, Any]] = _TX_REASONS


# Checking a value and building it are two steps, so that a reader can check a whole
# reply at once and build only what it reads (`cc_client.SessionResult`): `prepare_*`
# checks a freshly decoded wire array and puts the decoded field values in place (enum
# members, decimal counters); `*_from_prepared` builds the object from it, checking
# nothing again. `*_from_wire` does both on a copy of the arrays, so its argument keeps
# its strings (a counters map's int units become Decimals in place, as they always did).

def prepare_tx(obj: object) -> list[Any]:
    """Check a transaction's wire array; in place, its kind and reason become members and
    its counters decimals, so that it holds the Transaction's fields in order (an array
    of 10, from a server without rating notes, gets a nil rating)."""
    if type(obj) is not list or not 10 <= len(obj) <= 11:
        raise InvalidMessage("a transaction is an array of 10 or 11 fields")
    tid, time, user, session, rid, kind, reason, amount, currency, counters = obj[:10]
    if len(obj) == 10:
        obj.append(None)
    rating = obj[10]
    if type(tid) is not int or type(time) is not _DATETIME or type(user) is not str \
            or (session is not None and type(session) is not str) \
            or (rid is not None and type(rid) is not str) \
            or type(amount) is not _DECIMAL or type(currency) is not str \
            or type(kind) is not str or type(reason) is not str \
            or (rating is not None and type(rating) is not str):
        raise InvalidMessage(f"transaction {tid!r}: a field has the wrong type")
    # members are non-empty strings, so `or` falls to _lookup (and its error) only on a miss
    obj[5] = _TX_KIND_OF.get(kind) or _lookup(_TX_KINDS, kind, "kind")
    obj[6] = _TX_REASON_OF.get(reason) or _lookup(_TX_REASONS, reason, "reason")
    obj[9] = _dec_map(counters, "counters") if counters else _NO_COUNTERS
    return obj


def tx_from_wire(obj: object) -> m.Transaction:
    """A Transaction from its wire array."""
    return _new_tuple(_TRANSACTION, prepare_tx(obj.copy() if type(obj) is list else obj))


def prepare_rating(obj: object, what: str) -> list[Any] | None:
    """Check a rating result's wire array (None stays None), preparing its transactions
    in place (`prepare_tx`)."""
    if obj is None:
        return None
    if type(obj) is not list or len(obj) != 3:
        raise InvalidMessage(f"{what} must be [amount, currency, [transaction, ...]]")
    amount, currency, txs = obj
    if type(amount) is not _DECIMAL or type(currency) is not str or type(txs) is not list:
        raise InvalidMessage(f"{what} must be [amount, currency, [transaction, ...]]")
    for tx in txs:
        prepare_tx(tx)
    return obj


def rating_from_prepared(obj: list[Any] | None) -> m.RatingResult | None:
    """The RatingResult of an array `prepare_rating` checked."""
    if obj is None:
        return None
    amount, currency, txs = obj
    return _new_tuple(_RATING, (
        amount, currency, tuple([_new_tuple(_TRANSACTION, t) for t in txs]) if txs else ()))


def rating_from_wire(obj: object, what: str) -> m.RatingResult | None:
    """A RatingResult (or None) from its wire array."""
    if type(obj) is list and len(obj) == 3 and type(obj[2]) is list:
        obj = [obj[0], obj[1], [t.copy() if type(t) is list else t for t in obj[2]]]
    return rating_from_prepared(prepare_rating(obj, what))


def subscriber_to_wire(s: m.Subscriber) -> dict[str, Any]:
    wire = {"user": s.user_id, "currency": s.currency, "balance": s.balance,
            "reserved": s.reserved, "available": s.available, "counters": s.counters,
            "counters_reserved": s.counters_reserved}
    if s.plan is not None:
        wire["plan"] = s.plan
    return wire


_SUB_KEYS = frozenset({"user", "currency", "balance", "reserved", "available", "counters",
                       "counters_reserved"})

_K_SUBSCRIBER = _keys(_SUB_KEYS, {"plan"})


def subscriber_from_wire(obj: object) -> m.Subscriber:
    d = _fields(obj, _K_SUBSCRIBER, "subscriber")
    return m.Subscriber(_id(d["user"], "user"), _id(d["currency"], "currency"),
                        _dec(d["balance"], "balance"), _dec(d["reserved"], "reserved"),
                        _dec(d["available"], "available"), _dec_map(d["counters"], "counters"),
                        _dec_map(d["counters_reserved"], "counters_reserved"),
                        _opt_id(d.get("plan"), "plan"))


def session_to_wire(s: m.SessionInfo) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "session": s.session_id, "user": s.user_id, "service": s.service_id,
        "created": s.created_at, "listener": s.listener_id, "external": s.external_data,
        "reservations": [
            {"rid": r.reservation_id, "state": r.state, "item": item_to_wire(r.item),
             "amount": r.amount, "expires": r.expires_at,
             "resolution": r.default_resolution, "counters": r.counters,
             "inverse": r.property_to_inverse} for r in s.reservations]}
    if s.protocol is not None:           # only a Gy session's map has these two
        wire["protocol"] = s.protocol
    if s.peer is not None:
        wire["peer"] = s.peer
    return wire


_SESSION_KEYS = frozenset({"session", "user", "service", "created", "listener", "external",
                           "reservations"})
_RES_INFO_KEYS = frozenset({"rid", "state", "item", "amount", "expires", "resolution",
                            "counters", "inverse"})

_K_SESSION = _keys(_SESSION_KEYS, {"protocol", "peer"})
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
        tuple(reservations), _opt_id(d.get("protocol"), "protocol"),
        _opt_id(d.get("peer"), "peer"))
