"""The charging request and its reply: EXECUTE (a container of sub-requests) and
EXECUTE_RESULT (an outcome per reservation id)."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any, Final

from .. import messages as m
from ..errors import ErrorCode, InvalidMessage
from .fields import _bin, _bool, _fields, _id, _int, _keys, _list, _lookup, _op_id, _opt_id, _table
from .values import item_from_wire, prepare_rating, rating_from_prepared

# Hot names as Final aliases (a C static each in the compiled build; see wire.py)
_new_tuple: Final = tuple.__new__
_DATETIME: Final = dt.datetime
_EXECUTE: Final = m.Execute
_SUB_REQUEST: Final = m.SubRequest
_OUTCOME: Final = m.Outcome
_EXECUTE_RESULT: Final = m.ExecuteResult

# wire value -> enum member, for _lookup
_KINDS: Final = _table(m.ContainerKind)
_ACTIONS: Final = _table(m.Action)
_RESOLUTIONS: Final = _table(m.Resolution)
_RESULT_TYPES: Final = _table(m.ResultType)

# What each action refuses (indexes in the sub-request array, and their names)
_SUB_REFUSES: Final = {
    m.Action.RESERVE: ((3, "next"),),
    m.Action.CONFIRM: ((3, "next"), (4, "ttl"), (5, "resolution"), (6, "inverse")),
    m.Action.CANCEL: ((2, "item"), (3, "next"), (4, "ttl"), (5, "resolution"), (6, "inverse")),
    m.Action.CONFIRM_AND_RESERVE: (),
}
_MAX_TTL: Final = 400 * 86400.0
_TOO_MANY_SUBS: Final = ErrorCode.CONTAINER_TOO_LARGE


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
                                            _TOO_MANY_SUBS))
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


def prepare_outcome(obj: object) -> list[Any]:
    """Check an outcome's wire array; in place, its rating results are prepared
    (`values.prepare_rating`) and its granted item becomes a ChargeableItem."""
    if type(obj) is not list or len(obj) != 9:
        raise InvalidMessage("an outcome is an array of 9 fields")
    rid, error, message, cancel, confirm, reserve, granted, expires, below = obj
    if type(rid) is not str or (error is not None and type(error) is not str) \
            or (message is not None and type(message) is not str) or type(below) is not bool \
            or (expires is not None and type(expires) is not _DATETIME):
        raise InvalidMessage(f"outcome {rid!r}: a field has the wrong type")
    prepare_rating(cancel, "cancel")
    prepare_rating(confirm, "confirm")
    prepare_rating(reserve, "reserve")
    if granted is not None:
        obj[6] = item_from_wire(granted, "granted")
    return obj


def _dec_outcome(obj: object) -> m.Outcome:
    rid, error, message, cancel, confirm, reserve, granted, expires, below = \
        prepare_outcome(obj)
    return _new_tuple(_OUTCOME, (
        rid, error, message, rating_from_prepared(cancel), rating_from_prepared(confirm),
        rating_from_prepared(reserve), granted, expires, below))


def _enc_execute_result(msg: m.ExecuteResult) -> dict[str, Any]:
    return {"session": msg.session_id, "results": msg.outcomes}

_K_EXECUTE_RESULT: Final = _keys({"session", "results"})


def _result_fields(obj: object) -> tuple[str, list[Any]]:
    # the common case, a map of exactly the two fields, without _fields' set algebra
    if type(obj) is dict and len(obj) == 2 and "session" in obj and "results" in obj:
        d: dict[str, Any] = obj
    else:
        d = _fields(obj, _K_EXECUTE_RESULT, "EXECUTE_RESULT")
    outcomes = _list(d["results"], "results", 1 << 20)
    return _id(d["session"], "session"), outcomes


def prepare_execute_result(obj: object) -> tuple[str, list[list[Any]]]:
    """The session id and outcomes of an EXECUTE_RESULT map, checked as `decode_body`
    checks them, the outcomes prepared in place (`prepare_outcome`): for a reader that
    builds only the results it reads."""
    session, outcomes = _result_fields(obj)
    return session, [prepare_outcome(o) for o in outcomes]


def _dec_execute_result(obj: object) -> m.ExecuteResult:
    session, outcomes = _result_fields(obj)
    return _new_tuple(_EXECUTE_RESULT,
                      (session, tuple([_dec_outcome(o) for o in outcomes])))

