"""The operator commands: `ADMIN_COMMANDS` (each command's arguments and their checks),
`MUTATING_ADMIN`, the ADMIN and ADMIN_RESULT bodies, and typed admin result values."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .. import messages as m
from ..errors import InvalidMessage
from ..money import CURRENCY_RULE, is_currency
from .fields import _bool, _dec, _dec_map, _fields, _id, _int, _keys, _list, _op_id, _text, _time
from .values import session_from_wire, subscriber_from_wire, tx_from_wire
from .wire import _non_str_key, short


def _opt(check: Callable[[object, str], Any]) -> Callable[[object, str], Any]:
    def optional(value: object, what: str) -> Any:
        return None if value is None else check(value, what)
    return optional


def _currency(value: object, what: str) -> str:
    if not is_currency(value):
        raise InvalidMessage(f"{what} must be {CURRENCY_RULE}")
    return value  # type: ignore[return-value]


def _units(value: object, what: str) -> Decimal:
    """Counter units: a decimal, or an int (as everywhere counter units are sent)."""
    if type(value) is int:
        return Decimal(value)
    return _dec(value, what)


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
                          "currency": (_currency, False), "counters": (_opt(_dec_map), False),
                          "plan": (_opt(_id), False)},
    "get_subscriber": {"user": (_id, True)},
    "top_up": {"user": (_id, True), "amount": (_dec, True)},
    "find_sessions": {"user": (_opt(_id), False), "session": (_opt(_id), False),
                      "after": (_opt(_id), False), "limit": (_opt(_limit), False)},
    "cancel_session": {"session": (_id, True)},
    "transactions": {"user": (_opt(_id), False), "session": (_opt(_id), False),
                     "after": (_opt(_after), False), "limit": (_opt(_limit), False)},
    "request_renewal": {"session": (_id, True), "rid": (_id, True)},
    "stats": {},
    "catalog": {"service": (_opt(_id), False)},
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
    "set_counter": {"user": (_id, True), "counter": (_id, True), "units": (_units, True),
                    "reason": (_opt(_id), False)},
    "reset_counter": {"user": (_id, True), "counter": (_id, True),
                      "reason": (_opt(_id), False)},
    # price plans (README "Price plans")
    "set_plan": {"user": (_id, True), "plan": (_id, True), "from": (_opt(_time), False)},
})

#: The one list of the commands that change state, for client and server alike: a client
#: gives each an operation id (`op`) and re-sends the same body after a lost reply; the
#: server answers a repeat of that id with the first result (exactly once; PROTOCOL.md
#: section 8). Every other command only reads, and is safe to send again.
MUTATING_ADMIN = frozenset({"create_subscriber", "top_up", "cancel_session",
                            "delete_subscriber", "adjust", "set_counter", "reset_counter",
                            "request_renewal", "fault_add", "fault_remove", "fault_clear",
                            "record_clear", "clock_advance", "clock_set", "set_plan"})


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
        if name in args:   # a checker may convert (counter units: int -> Decimal)
            args[name] = check(args[name], f"{command}.{name}")
        elif required:
            raise InvalidMessage(f"{command}: missing argument {name!r}")
    op = d.get("op")
    return m.AdminRequest(command, args, None if op is None else _op_id(op))

_K_ADMIN_RESULT = _keys((), {"value", "next"})


def _dec_admin_result(obj: object) -> m.AdminResult:
    d = _fields(obj, _K_ADMIN_RESULT, "ADMIN_RESULT")
    return m.AdminResult(d.get("value"), d.get("next"))


def admin_value_from_wire(command: str, value: Any) -> Any:
    """Typed value of an admin result, by the command it answers."""
    if command in ("create_subscriber", "get_subscriber", "top_up", "adjust", "set_counter",
                   "reset_counter", "set_plan"):
        return subscriber_from_wire(value)
    if command == "list_subscribers":
        return [subscriber_from_wire(s) for s in _list(value, "subscribers", 1 << 20)]
    if command == "find_sessions":
        return [session_from_wire(s) for s in _list(value, "sessions", 1 << 20)]
    if command in ("transactions", "cancel_session", "delete_subscriber"):
        return [tx_from_wire(t) for t in _list(value, "transactions", 1 << 20)]
    return value
