"""Fault rules: make the server misbehave on cue (in the spirit of Toxiproxy and WireMock).

A rule has three parts, every field optional:

- a match: subscriber (`user`, glob), `service`, `session` (glob), container `kind`,
  sub-request `action`, message `type` (EXECUTE, ADMIN, LISTEN, ACK, NOTIFY), `listener`
  id, and the connection's authenticated user (`conn_user`, glob); on Diameter traffic
  also `diameter_command` (CCR, RAR, CER, DWR, DPR), `request_type` (INITIAL, UPDATE, TERMINATION,
  EVENT), `rating_group` and `origin_host` (glob): a rule with any of them matches only
  Diameter traffic;
- a schedule: only after `after` matches, then every `every`-th one, each with
  `probability` (from a generator seeded with `seed`), at most `times` times;
- an action (`ACTIONS`), with its `code` (error), `seconds` and `jitter` (delay, pause,
  delay-notify) and `scope` (error: the whole `container` or only the matching
  `subrequest`); on Diameter, `result_code` instead of `code` (error: that Result-Code,
  top level with scope `container`, in the matching MSCCs with scope `mscc`).

The rules only decide; the server acts (dispatch.py, connection.py, renewal.py). This
module does no IO and reads no clock. Every rule counts how often it matched and fired.
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from protocol.errors import ErrorCode

#: What a rule can make the server do.
ACTIONS = frozenset({
    "error", "delay", "drop-reply", "drop-request", "close-before", "close-after", "busy",
    "pause", "drop-notify", "delay-notify", "duplicate-notify"})
#: Actions that concern renewal notifications (matched against NOTIFY pushes).
NOTIFY_ACTIONS = frozenset({"drop-notify", "delay-notify", "duplicate-notify"})
MESSAGE_TYPES = frozenset({"EXECUTE", "ADMIN", "LISTEN", "ACK", "NOTIFY"})
KINDS = frozenset({"start", "update", "stop"})
SUB_ACTIONS = frozenset({"reserve", "confirm", "cancel", "confirm_and_reserve"})
SCOPES = frozenset({"container", "subrequest", "mscc"})
#: Diameter commands a rule can match (CCRs reach the request actions, RARs the notify ones)
#: the base protocol's requests from a peer: the peer state machine answers them, and
#: only a rule that names one of them as its `diameter_command` acts on the answer
BASE_COMMANDS = frozenset({"CER", "DWR", "DPR"})
BASE_ACTIONS = frozenset({"drop-reply", "drop-request", "delay", "close-before",
                          "close-after"})
DIAMETER_COMMANDS = frozenset({"CCR", "RAR"}) | BASE_COMMANDS
REQUEST_TYPES = frozenset({"INITIAL", "UPDATE", "TERMINATION", "EVENT"})
_DIAMETER_FIELDS = ("diameter_command", "request_type", "rating_group", "origin_host",
                    "result_code")
MAX_SECONDS = 3600.0   # the longest delay or pause a rule may ask for
MAX_RULES = 1000


class FaultError(ValueError):
    """A rule that cannot be valid (the message names the field)."""


@dataclass(frozen=True, slots=True)
class Request:
    """What a rule is matched against: one request, or one notification attempt."""

    type: str
    user: str | None = None
    service: str | None = None
    session: str | None = None
    kind: str | None = None
    actions: tuple[str, ...] = ()
    listener: int | None = None
    conn_user: str | None = None
    #: Diameter traffic only: the command (CCR, RAR), CC-Request-Type name, the
    #: Rating-Groups of its MSCCs, the Origin-Host (of a RAR: the peer it goes to)
    command: str | None = None
    request_type: str | None = None
    rating_groups: tuple[int, ...] = ()
    origin_host: str | None = None


@dataclass(frozen=True, slots=True)
class DiameterTraffic:
    """The Diameter side of a request (`Request`'s Diameter fields), as the front-end
    hands it to the dispatcher with a container it built from a CCR."""

    command: str
    request_type: str | None = None
    rating_groups: tuple[int, ...] = ()
    origin_host: str | None = None

    def fields(self) -> dict[str, Any]:
        """The Diameter fields of a `Request`, as keywords."""
        return {"command": self.command, "request_type": self.request_type,
                "rating_groups": self.rating_groups, "origin_host": self.origin_host}


@dataclass(slots=True)
class Rule:
    """One fault rule (see the module docstring); `matched` and `fired` count."""

    action: str
    user: str | None = None
    service: str | None = None
    session: str | None = None
    kind: str | None = None
    sub_action: str | None = None
    type: str | None = None
    listener: int | None = None
    conn_user: str | None = None
    diameter_command: str | None = None
    request_type: str | None = None
    rating_group: int | None = None
    origin_host: str | None = None
    times: int | None = None
    every: int | None = None
    probability: float | None = None
    after: int = 0
    seed: int | None = None
    code: str | None = None
    result_code: int | None = None
    scope: str = "container"
    seconds: float = 0.0
    jitter: float = 0.0
    id: int = 0
    matched: int = 0
    fired: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.check()
        self._rng = random.Random(self.seed)

    def check(self) -> None:
        """Raise FaultError unless every field is valid (its type first: a glob that is
        a number would fail every request it is matched against)."""
        for name, allowed in FIELD_TYPES.items():
            value = getattr(self, name)
            if not (type(value) in allowed or (value is None and name in _OPTIONAL)):
                raise FaultError(f"{name} must be {_TYPE_NAMES[allowed]}, not "
                                 f"{type(value).__name__} {value!r:.60}")
        if self.action not in ACTIONS:
            raise FaultError(f"action must be one of {sorted(ACTIONS)}, not {self.action!r}")
        _one_of("kind", self.kind, KINDS)
        _one_of("sub_action", self.sub_action, SUB_ACTIONS)
        _one_of("type", self.type, MESSAGE_TYPES)
        _one_of("scope", self.scope, SCOPES)
        _one_of("diameter_command", self.diameter_command, DIAMETER_COMMANDS)
        _one_of("request_type", self.request_type, REQUEST_TYPES)
        self._check_diameter()
        if self.action == "error" and self.result_code is None:
            if self.code not in ErrorCode.__members__:
                raise FaultError(f"action error needs a code of the protocol (or a Diameter "
                                 f"result_code), not {self.code!r}")
            if self.scope == "subrequest" and self.code in _CONNECTION_CODES:
                raise FaultError(f"{self.code} is not a sub-request outcome")
            if self.scope == "mscc":
                raise FaultError("scope mscc goes with result_code")
        elif self.code is not None and self.action != "error":
            raise FaultError("code goes with action error only")
        for name in ("times", "every"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 1):
                raise FaultError(f"{name} must be a whole number >= 1")
        if type(self.after) is not int or self.after < 0:
            raise FaultError("after must be a whole number >= 0")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise FaultError("probability must be between 0 and 1")
        if self.listener is not None and not 1 <= self.listener <= 127:
            raise FaultError("listener must be 1..127")
        for name in ("seconds", "jitter"):
            value = getattr(self, name)
            if not 0.0 <= value <= MAX_SECONDS:
                raise FaultError(f"{name} must be between 0 and {MAX_SECONDS:g}")
        if self.action in ("delay", "pause", "delay-notify") and self.seconds <= 0:
            raise FaultError(f"action {self.action} needs seconds > 0")

    def _check_diameter(self) -> None:
        command = self.command
        if command in BASE_COMMANDS:
            if self.action not in BASE_ACTIONS:
                raise FaultError(f"a {command} rule's action is one of "
                                 f"{sorted(BASE_ACTIONS)}")
            if self.request_type is not None or self.rating_group is not None:
                raise FaultError("request_type and rating_group match CCRs only")
        if command == "RAR" and self.action not in NOTIFY_ACTIONS:
            raise FaultError("a RAR rule's action is drop-notify, delay-notify or "
                             "duplicate-notify (the server sends RARs)")
        if command == "CCR" and self.action in NOTIFY_ACTIONS:
            raise FaultError(f"action {self.action} acts on RARs, not on CCRs")
        if command == "RAR" and (self.request_type is not None
                                 or self.rating_group is not None):
            raise FaultError("request_type and rating_group match CCRs, not RARs")
        if self.rating_group is not None and not 0 <= self.rating_group <= 0xFFFFFFFF:
            raise FaultError("rating_group must be 0..4294967295")
        if self.result_code is None:
            return
        if self.action != "error":
            raise FaultError("result_code goes with action error only")
        if self.code is not None:
            raise FaultError("an error rule has code (protocol) or result_code "
                             "(Diameter), not both")
        if not 1000 <= self.result_code <= 5999:
            raise FaultError("result_code must be a Diameter Result-Code 1000..5999")
        if self.scope not in ("container", "mscc"):
            raise FaultError("result_code goes with scope container or mscc")
        if self.sub_action is not None:
            raise FaultError("a result_code rule is tried before the container is built: "
                             "match rating_group, not sub_action")

    @property
    def command(self) -> str | None:
        """The Diameter command the rule matches: `diameter_command`, or the one its
        Diameter fields imply (RAR for notify actions, else CCR); None: any traffic."""
        if self.diameter_command is not None:
            return self.diameter_command
        if any(getattr(self, name) is not None for name in _DIAMETER_FIELDS):
            return "RAR" if self.action in NOTIFY_ACTIONS else "CCR"
        return None

    # ------------------------------------------------------------------ matching

    def matches(self, req: Request) -> bool:
        """True when every field the rule sets agrees with `req`."""
        rule_type = self.type or ("NOTIFY" if self.action in NOTIFY_ACTIONS else None)
        if rule_type is not None and rule_type != req.type:
            return False
        if self.action in NOTIFY_ACTIONS and req.type != "NOTIFY":
            return False
        command = self.command
        if req.command in BASE_COMMANDS and command != req.command:
            return False
        if command is not None and (
                command != req.command
                or (self.request_type is not None and self.request_type != req.request_type)
                or (self.rating_group is not None
                    and self.rating_group not in req.rating_groups)
                or not _glob(self.origin_host, req.origin_host)):
            return False
        return (_glob(self.user, req.user) and _glob(self.session, req.session)
                and _glob(self.conn_user, req.conn_user)
                and (self.service is None or self.service == req.service)
                and (self.kind is None or self.kind == req.kind)
                and (self.sub_action is None or self.sub_action in req.actions)
                and (self.listener is None or self.listener == req.listener))

    def consider(self, req: Request) -> bool:
        """Count a match of `req` and say whether the rule fires for it."""
        if not self.matches(req):
            return False
        self.matched += 1
        n = self.matched - self.after
        if n < 1:
            return False
        if self.every is not None and n % self.every:
            return False
        if self.probability is not None and self._rng.random() >= self.probability:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        self.fired += 1
        return True

    def delay(self) -> float:
        """The seconds this firing waits: `seconds`, plus up to `jitter` at random."""
        return self.seconds + (self._rng.uniform(0.0, self.jitter) if self.jitter else 0.0)

    def to_wire(self) -> dict[str, Any]:
        """The rule as a plain map (admin replies, `cc-admin fault list --json`)."""
        data = asdict(self)
        data.pop("_rng")
        return {k: v for k, v in data.items() if v is not None}


_TEXT, _INT, _NUMBER = (str,), (int,), (int, float)   # bool is none of them (`type() in`)
#: the type of each field a rule is made of (None allowed where the field is optional)
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "action": _TEXT, "user": _TEXT, "service": _TEXT, "session": _TEXT, "kind": _TEXT,
    "sub_action": _TEXT, "type": _TEXT, "listener": _INT, "conn_user": _TEXT,
    "diameter_command": _TEXT, "request_type": _TEXT, "rating_group": _INT,
    "origin_host": _TEXT, "result_code": _INT,
    "times": _INT, "every": _INT, "probability": _NUMBER, "after": _INT, "seed": _INT,
    "code": _TEXT, "scope": _TEXT, "seconds": _NUMBER, "jitter": _NUMBER}
_OPTIONAL = frozenset(f.name for f in fields(Rule) if f.default is None)
_TYPE_NAMES = {_TEXT: "a string", _INT: "a whole number", _NUMBER: "a number"}
_CONNECTION_CODES = frozenset({
    "AUTHENTICATION_FAILED", "UNSUPPORTED_VERSION", "HANDSHAKE_REQUIRED", "PROTOCOL_ERROR",
    "FRAME_TOO_LARGE", "TOO_MANY_CONNECTIONS", "HANDSHAKE_TIMEOUT", "IDLE_TIMEOUT"})
_FIELDS = frozenset(f.name for f in fields(Rule) if not f.name.startswith("_")) - \
    {"id", "matched", "fired"}


def _one_of(name: str, value: str | None, allowed: frozenset[str]) -> None:
    if value is not None and value not in allowed:
        raise FaultError(f"{name} must be one of {sorted(allowed)}, not {value!r}")


def _glob(pattern: str | None, value: str | None) -> bool:
    if pattern is None:
        return True
    return value is not None and fnmatch.fnmatchcase(value, pattern)


def rule_from_map(data: Mapping[str, Any]) -> Rule:
    """A rule from a map (admin command, TOML `[[faults]]`); FaultError when invalid.

    Keys are the `Rule` fields; `-` may stand for `_` (`sub-action`, `conn-user`)."""
    args: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in _FIELDS:
            raise FaultError(f"unknown fault rule field {key!r}")
        args[name] = value
    if "action" not in args:
        raise FaultError("a fault rule needs an action")
    for name in ("seconds", "jitter", "probability"):
        if type(args.get(name)) is int:
            args[name] = float(args[name])
    return Rule(**args)


class Faults:
    """The server's fault rules, tried in the order they were added.

    `add` returns the rule, which also works as a context manager that removes it::

        with server.faults.add(action="drop-reply", kind="update", times=1):
            ...
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        #: True while any rule exists: the server's hot path tests only this
        self.active = False
        self._rules: dict[int, Rule] = {}
        self._next_id = 0

    def __bool__(self) -> bool:
        return bool(self._rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(list(self._rules.values()))

    def add(self, rule: Rule | None = None, /, **fields_: Any) -> RuleHandle:
        """Add a rule (a `Rule`, or its fields as keywords); returns its handle."""
        if not self.enabled:
            raise FaultError("test controls are off on this server (--no-test-controls)")
        if len(self._rules) >= MAX_RULES:
            raise FaultError(f"at most {MAX_RULES} fault rules")
        if rule is None:   # user_id / session_id: the argument names of record.find too
            rule = rule_from_map({_ALIASES.get(k, k): v for k, v in fields_.items()})
        else:
            rule.check()      # its fields may have been changed since it was made
        self._next_id += 1
        rule.id = self._next_id
        self._rules[rule.id] = rule
        self.active = True
        return RuleHandle(self, rule)

    def remove(self, rule_id: int | RuleHandle) -> bool:
        """Remove one rule (by id or handle); False when there was none with that id."""
        found = self._rules.pop(int(rule_id), None) is not None
        self.active = bool(self._rules)
        return found

    def clear(self) -> int:
        """Remove every rule; how many there were."""
        count = len(self._rules)
        self._rules.clear()
        self.active = False
        return count

    def fire(self, req: Request, actions: frozenset[str] | None = None,
             result_codes: bool = False) -> list[Rule]:
        """The rules that fire for `req` (each counted), optionally only of `actions`;
        only the rules with a Diameter `result_code` when `result_codes`, else only the
        others (the Gy front-end tries those itself, before it builds the container)."""
        fired = []
        for rule in list(self._rules.values()):
            if actions is not None and rule.action not in actions:
                continue
            if (rule.result_code is not None) != result_codes:
                continue
            if rule.consider(req):
                fired.append(rule)
        return fired

    def to_wire(self) -> list[dict[str, Any]]:
        """Every rule as a map, with its counts."""
        return [rule.to_wire() for rule in self._rules.values()]


_ALIASES = {"user_id": "user", "session_id": "session"}


class RuleHandle:
    """A rule added to a `Faults`; leaving a `with` block removes it. Like the client's
    `client.admin.faults.add(...)` result: `id` (also `int(handle)`), `action`,
    `fields`, `remove()`."""

    def __init__(self, faults: Faults, rule: Rule) -> None:
        self.faults = faults
        self.rule = rule

    @property
    def id(self) -> int:
        """The rule id."""
        return self.rule.id

    def __int__(self) -> int:
        return self.rule.id

    __index__ = __int__

    @property
    def action(self) -> str:
        """The rule's action."""
        return self.rule.action

    @property
    def fields(self) -> dict[str, Any]:
        """The rule as a map, with its counts (as `fault_list` shows it)."""
        return self.rule.to_wire()

    @property
    def fired(self) -> int:
        """How often the rule fired so far."""
        return self.rule.fired

    @property
    def matched(self) -> int:
        """How often a request matched the rule so far."""
        return self.rule.matched

    def remove(self) -> bool:
        """Remove the rule; False when it was already gone."""
        return self.faults.remove(self.rule.id)

    def __enter__(self) -> RuleHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
