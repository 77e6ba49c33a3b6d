"""Message bodies: the encoder and decoder of each message type (EXECUTE's are in
execute.py, ADMIN's in admin.py), and `encode_body` / `decode_body` that dispatch on them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

from .. import messages as m
from ..errors import MAX_ERROR_TEXT, BadBody, InvalidMessage, ProtocolError
from ..frames import Frame, encode_frame
from .admin import _dec_admin, _dec_admin_result, _enc_admin
from .execute import (
    _dec_execute,
    _dec_execute_result,
    _enc_execute,
    _enc_execute_result,
    prepare_execute_result,
)
from .fields import _bin, _bool, _fields, _id, _int, _keys, _list, _op_id, _opt_id, _text, _time
from .wire import DECIMALS, DecimalCache, pack, unpack

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
    m.AdminResult: (T.ADMIN_RESULT, lambda r: {"value": r.value} if r.next is None
                    else {"value": r.value, "next": r.next}),
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


# A container's request and reply are most of the traffic: encoded and decoded by a direct
# call (native when compiled) rather than through the tables' generic calls.
_EXECUTE: Final = m.Execute
_EXECUTE_RESULT: Final = m.ExecuteResult
_T_EXECUTE: Final = int(T.EXECUTE)
_T_EXECUTE_RESULT: Final = int(T.EXECUTE_RESULT)


def encode_body(msg: m.Message) -> tuple[int, bytes]:
    """(message type, msgpack body) of a message."""
    kind = type(msg)
    if kind is _EXECUTE_RESULT:
        return _T_EXECUTE_RESULT, pack(_enc_execute_result(msg))  # type: ignore[arg-type]
    if kind is _EXECUTE:
        return _T_EXECUTE, pack(_enc_execute(msg))  # type: ignore[arg-type]
    msg_type, to_wire = _ENCODERS[kind]
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
        raise _not_a_map(m.MsgType(msg_type).name, obj)
    try:
        if msg_type == _T_EXECUTE:
            return _dec_execute(obj)
        if msg_type == _T_EXECUTE_RESULT:
            return _dec_execute_result(obj)
        return decoder(obj)  # type: ignore[no-any-return]
    except BadBody:
        raise
    except InvalidMessage as exc:
        if msg_type == m.MsgType.EXECUTE:
            exc.operation = _execute_key(obj)
        raise


def execute_result_outcomes(body: bytes, decimals: DecimalCache = DECIMALS,
                            ) -> tuple[str, list[list[Any]]]:
    """An EXECUTE_RESULT body checked exactly as `decode_body` checks it (the same errors),
    as its session id and its outcomes' wire arrays, prepared to be built from
    (`execute.prepare_outcome`): `cc_client.SessionResult` builds only what is read."""
    obj = unpack(body, decimals)
    if type(obj) is not dict:
        raise _not_a_map("EXECUTE_RESULT", obj)
    return prepare_execute_result(obj)


def _not_a_map(name: str, obj: object) -> BadBody:
    return BadBody(f"the body of a {name} must be a msgpack map, "
                   f"not {_TYPE_NAMES.get(type(obj), type(obj).__name__)}")


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
