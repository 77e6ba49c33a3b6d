"""Field checks: each takes a peer's value and the name to blame, and returns it checked
(or raises `InvalidMessage` naming the field, with the most precise error code)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Final

from .. import messages as m
from ..errors import ErrorCode, InvalidMessage
from .wire import EXT_DECIMAL, _non_str_key, short


class _Keys:
    """The fields of a map: those it must have, and all it may have."""

    __slots__ = ("allowed", "names", "required")

    def __init__(self, required: frozenset[str], allowed: frozenset[str]) -> None:
        self.required = required
        self.allowed = allowed
        self.names = tuple(sorted(required))   # the same, to go through in C when compiled


def _keys(required: Iterable[str] = (), optional: Iterable[str] = ()) -> _Keys:
    """Built once per message kind at import: a frozenset in a call is built per call."""
    must = frozenset(required)
    return _Keys(must, must | frozenset(optional))


def _fields(obj: object, spec: _Keys, what: str) -> dict[str, Any]:
    if type(obj) is not dict:
        raise InvalidMessage(f"{what} must be a map")
    if len(obj) == len(spec.names):    # the usual map: its required fields and no other
        for name in spec.names:
            if name not in obj:
                break
        else:
            return obj
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
