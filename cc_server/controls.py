"""Test controls: fault rules, the request record and the manual clock, in one place.

`TestControls` is what the admin commands `fault_*`, `record_*` and `clock_*` reach, what
`cc_server.testing` hands to in-process tests, and what the dispatcher asks which fault
rules fire for a request. `--no-test-controls` builds it disabled: every command is then
refused with FORBIDDEN and no rule can be added.

What a fired rule does (the dispatcher and the connection carry it out):

- `error`: scope `container`, an ERROR with the code, nothing applied or stored; scope
  `subrequest`, the matching sub-requests fail with the code, unapplied, the rest runs.
- `busy`: ERROR TOO_MANY_REQUESTS, unapplied. `drop-request`: neither applied nor
  answered. `close-before`: the connection closes, nothing applied.
- `drop-reply`: applied, logged and stored, never answered (a retry gets the stored
  reply). `close-after`: the same, and the connection closes.
- `delay`: applied; the reply leaves `seconds` (+ jitter) later, other connections go on.
- `pause`: the server stops reading every connection for `seconds`.
- `drop-notify` / `delay-notify` / `duplicate-notify`: a notification attempt is not
  sent / sent late / sent twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol import messages as m
from protocol.errors import ErrorCode

from .clock import ClockError, ManualClock, parse_time
from .engine import Refused
from .faults import (
    NOTIFY_ACTIONS,
    DiameterTraffic,
    FaultError,
    Faults,
    Request,
    Rule,
    rule_from_map,
)
from .record import CONTROL_COMMANDS, Record

#: Actions the dispatcher handles before the request is applied.
ACTIONS_BEFORE_APPLY = frozenset({"error", "busy", "drop-request", "close-before", "pause"})
#: Actions that act on the reply of an applied request.
ACTIONS_AFTER_APPLY = frozenset({"drop-reply", "close-after", "delay"})
REQUEST_ACTIONS = ACTIONS_BEFORE_APPLY | ACTIONS_AFTER_APPLY
RECORD_PAGE = 1000   # entries per admin reply


@dataclass(slots=True)
class Plan:
    """What the fired rules ask of one request: `before` (the first of them that stops
    or refuses it), `sub_errors` (sub-request index -> code), `after` (what to do with the
    reply), `pause` seconds."""

    before: Rule | None = None
    sub_errors: dict[int, str] | None = None
    after: Rule | None = None
    pause: float = 0.0


def _rating_group(reservation_id: str) -> int | None:
    """The Rating-Group of a Gy reservation id ("RG<n>" or "RG<n>.<k>", gy.py)."""
    head = reservation_id[2:].partition(".")[0] if reservation_id.startswith("RG") else ""
    return int(head) if head.isdigit() else None


class TestControls:
    """Faults, record and clock of one server."""

    __test__ = False   # not a pytest test class
    #: the admin commands of the test controls (record.py says what sets them apart)
    CONTROL_COMMANDS = CONTROL_COMMANDS

    def __init__(self, enabled: bool = True, record_size: int = 0,
                 clock: Callable[[], float] | None = None) -> None:
        self.enabled = enabled
        self.faults = Faults(enabled)
        self.record: Record | None = Record(record_size) if record_size and enabled else None
        #: the server's clock; a `ManualClock` tells the server itself when it moves
        self.clock = clock
        #: the Diameter side of a notification (a RAR) for the notify rules; set by the
        #: Diameter listener, None for a notification pushed over msgpack
        self.notify_traffic: Callable[[m.Notification], DiameterTraffic | None] | None = None

    @property
    def manual_clock(self) -> ManualClock | None:
        """The manual clock, when the server runs on one."""
        return self.clock if isinstance(self.clock, ManualClock) else None

    # ------------------------------------------------------------------ requests

    def plan_execute(self, msg: m.Execute, conn_user: str | None,
                     traffic: DiameterTraffic | None = None) -> Plan | None:
        """The fired rules' plan for one container (None: nothing fired); `traffic`: the
        CCR it was built from."""
        req = Request("EXECUTE", msg.user_id, msg.service_id, msg.session_id, str(msg.kind),
                      tuple(str(sub.action) for sub in msg.subs), conn_user=conn_user,
                      **traffic.fields() if traffic is not None else {})
        fired = self.faults.fire(req, REQUEST_ACTIONS)
        if not fired:
            return None
        plan = Plan()
        for rule in fired:
            if rule.action == "error" and rule.scope == "subrequest":
                errors = plan.sub_errors or {}
                for index, sub in enumerate(msg.subs):
                    if (rule.sub_action is None or rule.sub_action == sub.action) and (
                            rule.rating_group is None
                            or _rating_group(sub.reservation_id) == rule.rating_group):
                        errors.setdefault(index, str(rule.code))
                plan.sub_errors = errors
            else:
                self._place(plan, rule)
        return plan

    def plan_other(self, type_name: str, conn_user: str | None, user: str | None = None,
                   session: str | None = None, listener: int | None = None) -> Plan | None:
        """The plan for an ADMIN, LISTEN or ACK request (None: nothing fired)."""
        fired = self.faults.fire(Request(type_name, user, None, session, listener=listener,
                                         conn_user=conn_user), REQUEST_ACTIONS)
        if not fired:
            return None
        plan = Plan()
        for rule in fired:
            if rule.action != "error" or rule.scope == "container":
                self._place(plan, rule)
        return plan

    @staticmethod
    def _place(plan: Plan, rule: Rule) -> None:
        if rule.action == "pause":
            plan.pause = max(plan.pause, rule.delay())
        elif rule.action in ACTIONS_BEFORE_APPLY:
            plan.before = plan.before or rule
        elif plan.after is None:
            plan.after = rule

    def plan_notify(self, msg: m.Notification) -> list[Rule]:
        """The notification rules that fire for one NOTIFY attempt."""
        traffic = self.notify_traffic(msg) if self.notify_traffic is not None else None
        req = Request("NOTIFY", msg.user_id, msg.service_id, msg.session_id,
                      listener=msg.listener_id,
                      **traffic.fields() if traffic is not None else {})
        return self.faults.fire(req, NOTIFY_ACTIONS)

    # ------------------------------------------------------------------ admin commands

    def _check(self) -> None:
        if not self.enabled:
            raise Refused(ErrorCode.FORBIDDEN, "test controls are off on this server "
                                               "(--no-test-controls)")

    def fault_add(self, args: dict[str, Any], now: float) -> Any:
        """ADMIN fault_add {rule: map}: the rule as added, with its id."""
        self._check()
        try:
            handle = self.faults.add(rule_from_map(args["rule"]))
        except FaultError as exc:
            raise Refused(ErrorCode.INVALID_REQUEST, f"fault rule: {exc}") from None
        return handle.rule.to_wire()

    def fault_list(self, args: dict[str, Any], now: float) -> Any:
        """ADMIN fault_list: every rule with its counts."""
        self._check()
        return self.faults.to_wire()

    def fault_remove(self, args: dict[str, Any], now: float) -> Any:
        """ADMIN fault_remove {id}: true when the rule existed."""
        self._check()
        return self.faults.remove(args["id"])

    def fault_clear(self, args: dict[str, Any], now: float) -> Any:
        """ADMIN fault_clear: how many rules were removed."""
        self._check()
        return self.faults.clear()

    def record_get(self, args: dict[str, Any], now: float) -> Any:
        """ADMIN record_get {filters, after, limit}: recorded frames, oldest first."""
        self._check()
        if self.record is None:
            raise Refused(ErrorCode.INVALID_REQUEST,
                          "the request record is off (start cc-server with --record N)")
        since, until = args.get("since"), args.get("until")
        found = self.record.find(
            user=args.get("user"), session=args.get("session"), kind=args.get("kind"),
            type=args.get("type"), direction=args.get("direction"),
            since=since.timestamp() if isinstance(since, dt.datetime) else None,
            until=until.timestamp() if isinstance(until, dt.datetime) else None)
        after = args.get("after") or 0
        limit = min(args.get("limit") or RECORD_PAGE, RECORD_PAGE)
        return [e.to_wire() for e in found if e.seq > after][:limit]

    def record_clear(self, args: dict[str, Any], now: float) -> Any:
        """ADMIN record_clear: how many entries were dropped."""
        self._check()
        if self.record is None:
            return 0
        count = len(self.record.entries)
        self.record.clear()
        return count

    def _manual(self) -> ManualClock:
        self._check()
        clock = self.manual_clock
        if clock is None:
            raise Refused(ErrorCode.INVALID_REQUEST, "the server's clock is not manual "
                                                     "(start cc-server with --clock manual)")
        return clock

    def clock_get(self, args: dict[str, Any], now: float) -> Any:
        """ADMIN clock_get: the server's time, whether it is manual, and its `mode`
        ("wall", "manual" or "scaled") and `speed` (times real time; 0 when manual)."""
        self._check()
        manual = self.manual_clock is not None
        speed = float(getattr(self.clock, "speed", 1.0))
        mode = "manual" if manual else "scaled" if speed != 1.0 else "wall"
        return {"time": dt.datetime.fromtimestamp(now, dt.UTC), "manual": manual,
                "mode": mode, "speed": 0.0 if manual else speed}

    def clock_advance(self, args: dict[str, Any], now: float) -> Any:
        """ADMIN clock_advance {seconds}: move the manual clock; its new time."""
        clock = self._manual()
        try:
            when = clock.advance(float(args["seconds"]))
        except ClockError as exc:
            raise Refused(ErrorCode.INVALID_REQUEST, str(exc)) from None
        return self.moved(when)

    def clock_set(self, args: dict[str, Any], now: float) -> Any:
        """ADMIN clock_set {time}: move the manual clock to a time; its new time."""
        clock = self._manual()
        value = args["time"]
        try:
            when = clock.set(parse_time(value) if isinstance(value, str) else value)
        except ClockError as exc:
            raise Refused(ErrorCode.INVALID_REQUEST, str(exc)) from None
        return self.moved(when)

    @staticmethod
    def moved(when: float) -> Any:
        """The result of a clock move to `when`."""
        return {"time": dt.datetime.fromtimestamp(when, dt.UTC), "manual": True}

    def restore_clock(self, when: float) -> None:
        """Recovery: a logged clock move (the manual clock never goes back)."""
        clock = self.manual_clock
        if clock is not None and when > clock.now:
            clock.now = when

    def commands(self) -> dict[str, Callable[[dict[str, Any], float], Any]]:
        """The admin command handlers, by name."""
        return {"fault_add": self.fault_add, "fault_list": self.fault_list,
                "fault_remove": self.fault_remove, "fault_clear": self.fault_clear,
                "record_get": self.record_get, "record_clear": self.record_clear,
                "clock_get": self.clock_get, "clock_advance": self.clock_advance,
                "clock_set": self.clock_set}
