"""The checks and wire messages of `operations.py`, compiled in the compiled build.

The operations' public methods stay interpreted (they must refuse a wrong argument type
with the client's own `InvalidArgumentType`, where a compiled signature would raise a bare
TypeError first), and hand their arguments, as plain objects, to these functions: each
checks what the public method promises to check, in the same order and with the same
message, and builds the sub-request or the EXECUTE message.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final, TypeVar

from protocol import messages as m
from protocol.messages import ChargeableItem, Resolution, ResultType

from .errors import InvalidArgument, InvalidArgumentType

E = TypeVar("E", Resolution, ResultType)

# Hot names as Final aliases: a C static each in the compiled build, and no enum class
# attribute lookup per call (EnumType's __getattr__ makes those slow in Python 3.11). The
# messages are built with tuple.__new__: a NamedTuple's own __new__ is interpreted Python.
_new_tuple: Final = tuple.__new__
_SUB_REQUEST: Final = m.SubRequest
_EXECUTE: Final = m.Execute
_ITEM: Final = m.ChargeableItem
_DECIMAL: Final = Decimal
_RESERVE: Final = m.Action.RESERVE
_CONFIRM: Final = m.Action.CONFIRM
_CANCEL: Final = m.Action.CANCEL
_CONFIRM_AND_RESERVE: Final = m.Action.CONFIRM_AND_RESERVE


def check_ids(user_id: object, service_id: object, session_id: object) -> None:
    """InvalidArgument unless all three are non-empty strings."""
    if isinstance(user_id, str) and user_id and isinstance(service_id, str) and service_id \
            and isinstance(session_id, str) and session_id:
        return
    for name, value in (("user_id", user_id), ("service_id", service_id),
                        ("session_id", session_id)):
        if not isinstance(value, str) or not value:
            raise InvalidArgument(f"{name} must be a non-empty str")


def ttl(value: object) -> Any:
    """Seconds as the wire carries them: an int stays an int, a Decimal becomes a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, _DECIMAL)):
        raise InvalidArgumentType(f"ttl must be a number of seconds, not {type(value).__name__}")
    return float(value) if isinstance(value, _DECIMAL) else value


def item(value: object, what: str) -> ChargeableItem | None:
    """`value` if it is a chargeable item or None, else InvalidArgumentType."""
    if value is not None and not isinstance(value, _ITEM):
        raise InvalidArgumentType(f"{what} must be a ChargeableItem or None")
    return value


def enum(kind: type[E], value: Any) -> E:
    """The member of `kind` that `value` is or names; InvalidArgument if none."""
    if isinstance(value, kind):   # a member already: no Enum call (a lookup by value)
        return value
    try:
        member: E = kind(value)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    return member


def add(subs: list[m.SubRequest], message: object, sub: Any) -> None:
    """Append `sub` to a container not yet executed (`message` None). (`sub` is Any: its
    reservation id is the caller's unchecked argument, which a typed one would check.)"""
    if message is not None:
        raise RuntimeError("this operation was executed already; create a new one")
    rid = sub.reservation_id
    if not isinstance(rid, str) or not rid:
        raise InvalidArgument("reservation_id must be a non-empty str")
    subs.append(sub)


def reserve(reservation_id: object, reserve_item: object, seconds: object,
            resolution: object, inverse: object) -> m.SubRequest:
    """The sub-request of prepare_reserve."""
    return _new_tuple(_SUB_REQUEST, (
        _RESERVE, reservation_id, item(reserve_item, "item"), None, ttl(seconds),
        enum(Resolution, resolution), inverse))


def confirm(reservation_id: object, confirm_item: object) -> m.SubRequest:
    """The sub-request of prepare_confirm."""
    return _new_tuple(_SUB_REQUEST, (
        _CONFIRM, reservation_id, item(confirm_item, "item"), None, None, None, None))


def cancel(reservation_id: object) -> m.SubRequest:
    """The sub-request of prepare_cancel."""
    return _new_tuple(_SUB_REQUEST, (_CANCEL, reservation_id, None, None, None, None, None))


def confirm_and_reserve(reservation_id: object, confirm_item: object, reserve_item: object,
                        seconds: object, resolution: object,
                        inverse: object) -> m.SubRequest:
    """The sub-request of prepare_confirm_and_reserve."""
    return _new_tuple(_SUB_REQUEST, (
        _CONFIRM_AND_RESERVE, reservation_id, item(confirm_item, "confirm_item"),
        item(reserve_item, "reserve_item"), ttl(seconds),
        None if resolution is None else enum(Resolution, resolution), inverse))


def execute_message(operation_id: Any, kind: Any, user_id: Any, service_id: Any,
                    session_id: Any, subs: list[m.SubRequest], listener_id: Any,
                    external: Any, result_type: Any, cleanup_result_type: Any,
                    filter_transaction: Any) -> m.Execute:
    """The EXECUTE message of a container (the fields as the operation holds them: Any,
    since a compiled signature would check types the interpreted one never did)."""
    return _new_tuple(_EXECUTE, (
        operation_id, kind, user_id, service_id, session_id, tuple(subs), listener_id,
        external, result_type, cleanup_result_type, filter_transaction))
