"""Requests in, replies out: the one place where server-side failures become wire codes.

`Dispatcher.handle` takes one request frame of a connection that completed its handshake
and returns the reply (message type, msgpack body), or None when the request expects none.
Bad input becomes an ERROR reply, an unexpected exception SERVER_ERROR, except while a
change of state is being applied: then the server stops (`fatal`). The one exception it
raises is `BadBody`, for a frame no valid peer sends (the connection then closes).

Exactly once: the outcome of an EXECUTE is remembered under (user, op) with a digest of
its body once a valid `user` and `op` have been read, whatever it is (a result, or an
ERROR decided by the request itself: validation, a size limit, the charging rules); a
repeat gets it back, a reuse of the op id with another body gets OPERATION_ID_REUSED.
Refusals that say nothing about the request (FORBIDDEN, SERVER_ERROR, TOO_MANY_REQUESTS)
are not remembered. Mutating ADMIN commands (`codec.MUTATING_ADMIN`) with an `op` likewise,
under ("", op), but only their results: a refused ADMIN changed nothing (PROTOCOL.md
section 8, "fails validation"), so the same op may come again, corrected or not.
While the store of outcomes is full (--dedup-max-entries), an operation it holds nothing
for is refused with TOO_MANY_REQUESTS, unapplied: no outcome is ever dropped inside its
window (clock moves excepted: they are what ages outcomes out of a manual clock's window).

Every change of state goes through an `apply_*` method that the write-ahead log replays
after a crash: a record is [kind, now, argument] with the request's own frame body as the
argument, so replay runs exactly the same code with exactly the same clock. What a timer
decides is logged as the decision (REC_EXPIRED: which reservations, in which order), so
replay never depends on the expiry heap or the size of a timer run's batch.

Fail-stop window: from the first change of state to the log record that holds it
(`applying`), any exception, whatever its type (a DecimalException too), stops the server
(`fatal`). What comes after the record (renewal notifications handed to the renewal
service, pushes, socket writes) is outside it: an error there is counted
(`notify_failures`) and logged, rate-limited, and the renewals not handed over are kept
for the next timer run.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from protocol import codec
from protocol import messages as m
from protocol.errors import (
    LIMIT_CODES,
    BadBody,
    ErrorCode,
    InvalidMessage,
    ProtocolError,
)
from protocol.frames import DEFAULT_MAX_FRAME, Frame

from .controls import Plan, TestControls
from .dedup import ANY_BODY, Key, OutcomeCache, Reply, digest
from .engine import Catalog, Engine, Refused, refills
from .engine import subscribers as subs
from .faults import Rule
from .latency import Histogram
from .limits import Limits
from .ratelog import RateLimitedLog
from .record import type_name

log = logging.getLogger("cc_server")
T = m.MsgType
MUTATING_ADMIN = codec.MUTATING_ADMIN
#: the test controls' changes are not logged: fault rules and the record live in memory
#: only, and a clock move is logged as REC_CLOCK, carrying its outcome when it had an op
LOGGED_ADMIN = MUTATING_ADMIN - TestControls.CONTROL_COMMANDS
#: The fault actions before apply that the connection carries out (no reply, or a close).
_LEFT_TO_CONNECTION = frozenset({"drop-request", "close-before"})
CLOCK_MOVES = frozenset({"clock_advance", "clock_set"})
#: commands whose failure half-way is a fail-stop (a clock move runs the timers)
APPLIED_ADMIN = LOGGED_ADMIN | CLOCK_MOVES
#: operator queries: they change nothing, so their replies wait for no log record
READ_ONLY_ADMIN = frozenset({"get_subscriber", "find_sessions", "transactions", "stats",
                             "list_subscribers", "catalog"})
_perf_counter: Final = time.perf_counter   # a C static compiled; `time.x` is a lookup
REC_EXECUTE: Final = 1
REC_ADMIN: Final = 2
REC_EXPIRE: Final = 3
REC_ACK: Final = 4
REC_REMEMBER: Final = 5
#: the expiries of one timer run: [[session id, reservation id], ...] in the order applied
#: (REC_EXPIRE, its limit only, is what older logs hold: still replayed)
REC_EXPIRED: Final = 6
#: test controls: a container run with injected sub-request errors; a manual clock move
REC_EXECUTE_FAULTED: Final = 16
REC_CLOCK: Final = 17
#: an allowance refill decision: [[every, period start], ...] (refills.py)
REC_REFILL: Final = 24
#: a catalog reload (SIGHUP): the catalog file's content, priced by from then on
REC_CATALOG: Final = 25
EXIT_FAIL_STOP = 70   # EX_SOFTWARE: an internal error while applying a change
#: request types a client sends after the handshake (HELLO, PING and GOODBYE are the
#: connection's), with the role each needs
#: (plain int keys: a frame's type is an int, and an IntEnum key costs a comparison more)
REQUESTS: Final[dict[int, str | None]] = {
    int(T.EXECUTE): "charging", int(T.ADMIN): "admin", int(T.LISTEN): "charging",
    int(T.UNLISTEN): None, int(T.ACK): None}
TX_PAGE: Final = 2000  # journal entries per ADMIN_RESULT frame (at most: see `_fit`)
#: the listings, paged by count and by size: a reply that would pass the frame limit is
#: cut short and carries `next`, the `after` of the following page (`_cursor`)
PAGED: Final = frozenset({"list_subscribers", "find_sessions", "transactions", "record_get"})
#: bytes of an ADMIN_RESULT besides its items: map, keys, array header and a `next` cursor
#: (at most a 256-code-point id: 1,027 bytes)
REPLY_OVERHEAD: Final = 1100
# the requests, by type (Final: compiled, C statics rather than lookups on every use)
_EXECUTE: Final = m.Execute
_ADMIN: Final = m.AdminRequest


class Peer(Protocol):
    """What the dispatcher needs of a connection."""

    roles: frozenset[str]
    name: str


class Renewal(Protocol):
    """The renewal notification service (see renewal.py)."""

    def register(self, peer: Any, listener_id: int) -> None: ...
    def unregister(self, peer: Any, listener_id: int) -> None: ...
    def ack(self, peer: Any, notification_id: int) -> str: ...
    def acknowledge(self, notification_id: int) -> None: ...
    def submit(self, due: dict[Any, m.RenewalReason], now: float) -> None: ...
    def would_drop(self, cs: Any) -> bool: ...


def _text_arg(args: Mapping[str, Any], name: str) -> str | None:
    value = args.get(name)
    return value if isinstance(value, str) else None


def _cursor(command: str, item: Any) -> Any:
    """The `after` that pages on from a listed item."""
    if command == "transactions":
        return item[0]                 # a transaction: its id
    if command == "record_get":
        return item["seq"]
    return item["session" if command == "find_sessions" else "user"]


def error_reply(code: str, message: str = "") -> Reply:
    """An ERROR reply."""
    return codec.encode_body(m.Error(code, message))


class Dispatcher:
    """Routes requests to the engine, the operator commands and the renewal service."""

    def __init__(self, engine: Engine, clock: Callable[[], float], renewal: Renewal,
                 dedup: OutcomeCache, limits: Limits | None = None) -> None:
        #: appends one write-ahead-log record (set with --data-dir)
        self.wal: Callable[[bytes], int] | None = None
        self.engine = engine
        self.clock = clock
        self.renewal = renewal
        self.dedup = dedup
        self.limits = limits or Limits()
        #: called with (code, peer name) when a request is refused for a limit
        self.on_limit: Callable[[ErrorCode, str], None] | None = None
        #: called with the peer name when a new operation is refused: outcomes store full
        self.on_dedup_full: Callable[[str], None] | None = None
        #: more sections of `stats()`, by name (a section returning None is left out)
        self.stats_sections: dict[str, Callable[[], Any]] = {}
        #: a Gy session's (protocol, peer) for find_sessions (set by the Diameter
        #: listener; None for a msgpack session)
        self.session_origin: Callable[[m.SessionInfo], tuple[str, str | None] | None] | \
            None = None
        #: (container kind or command, outcome) -> count. Not a Counter: its Python-level
        #: __delitem__ sends every `+= 1` through Python slot dispatch (3 times slower).
        self.counts: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.latency = {"execute": Histogram(), "admin": Histogram()}
        #: True while a change of state is being applied and logged (an exception then:
        #: `fatal`)
        self.applying = False
        #: errors handing renewals over after a change was applied (never a fail-stop)
        self.notify_failures = 0
        self.events = RateLimitedLog(log)
        #: set by an embedder (cc_server.testing) to stop otherwise than by ending the
        #: process; requests after a fail-stop then get SERVER_ERROR
        self.on_fatal: Callable[[Peer | None, Frame | None], None] | None = None
        self.stopped = False
        #: True when the request just handled was a read (an operator query): its reply
        #: depends on no log record, so it leaves even while the disk is full
        self.read_only = False
        #: test controls (fault rules, record, clock); None in bare test set-ups
        self.controls: TestControls | None = None
        #: a fired fault rule the connection carries out for the request just handled
        #: (with the reply, when the request was applied): see `take_fault`
        self.fault: tuple[Rule, Reply | None] | None = None
        #: called with seconds when a `pause` rule fires (the server stops reading)
        self.on_pause: Callable[[float], None] | None = None
        #: the largest reply body a listing may send (the server's max_frame, which
        #: clients adopt from HELLO_OK)
        self.max_reply = DEFAULT_MAX_FRAME
        #: (op, body digest) of the clock move being applied: its REC_CLOCK record carries
        #: the move's outcome too, so that no crash keeps the move and loses its outcome
        self._clock_op: tuple[bytes, bytes] | None = None
        self._admin: dict[str, Callable[[dict[str, Any], float], Any]] = {
            "create_subscriber": self._create_subscriber,
            "get_subscriber": lambda a, now: codec.subscriber_to_wire(
                self.engine.get_subscriber(a["user"])),
            "top_up": lambda a, now: codec.subscriber_to_wire(
                self.engine.top_up(a["user"], a["amount"], now)),
            "find_sessions": lambda a, now: [
                self._session_to_wire(s) for s in self.engine.find_sessions(
                    a.get("user"), a.get("session"), min(a.get("limit") or 1000, 5000),
                    a.get("after"))],
            "cancel_session": lambda a, now: [codec.tx_to_wire(t) for t in
                                              self.engine.cancel_session(a["session"], now)],
            "transactions": self._transactions,
            "request_renewal": self._request_renewal,
            "stats": lambda a, now: self.stats(),
            "catalog": self._catalog,
            "list_subscribers": lambda a, now: [
                codec.subscriber_to_wire(s) for s in subs.list_subscribers(
                    self.engine, a.get("prefix"), a.get("currency"), a.get("after"),
                    min(a.get("limit") or 1000, 5000))],
            "delete_subscriber": lambda a, now: [codec.tx_to_wire(t) for t in
                                                 subs.delete_subscriber(
                                                     self.engine, a["user"],
                                                     bool(a.get("force")), now)],
            "adjust": lambda a, now: codec.subscriber_to_wire(subs.adjust(
                self.engine, a["user"], a["amount"], a["reason"], now)),
            "set_counter": lambda a, now: codec.subscriber_to_wire(subs.set_counter(
                self.engine, a["user"], a["counter"], a["units"], a.get("reason"), now)),
            "reset_counter": lambda a, now: codec.subscriber_to_wire(subs.reset_counter(
                self.engine, a["user"], a["counter"], a.get("reason"), now)),
            "set_plan": lambda a, now: codec.subscriber_to_wire(refills.set_plan(
                self.engine, a["user"], a["plan"],
                a["from"].timestamp() if a.get("from") is not None else None, now)),
        }

    # ------------------------------------------------------------------ entry point

    def handle(self, peer: Peer, frame: Frame) -> Reply | None:
        """The reply to one request frame (None: the request expects no reply).
        Raises `BadBody` for a frame no valid peer sends."""
        self.read_only = False
        if self.stopped:
            return error_reply(ErrorCode.SERVER_ERROR, "the server stopped on an internal "
                                                       "error; nothing was applied")
        try:
            if frame.type not in REQUESTS:
                if frame.type in m.MsgType._value2member_map_:
                    raise BadBody(f"a client does not send {m.MsgType(frame.type).name} "
                                  f"({frame.type:#04x})")
                codec.decode(frame)     # raises BadBody: unknown message type
            role = REQUESTS[frame.type]
            if role is not None:
                self._need(peer, role)
            try:
                msg = codec.decode(frame)
            except BadBody:
                raise
            except InvalidMessage as invalid:
                if frame.type == T.EXECUTE:
                    return self._invalid_execute(peer, frame.body, invalid)
                raise
            controls = self.controls
            if controls is not None and controls.faults.active:
                plan = self._plan(controls, peer, msg)
                if plan is not None:
                    return self._with_plan(peer, msg, frame, plan)
            return self._request(peer, msg, frame)
        except BadBody:
            raise
        except ProtocolError as exc:
            self.counts["request", exc.code] += 1
            self._limit_hit(exc.code, peer)
            return error_reply(exc.code, exc.message)
        except Refused as refused:
            if refused.code in LIMIT_CODES and self.on_limit is not None:
                self.on_limit(refused.code, peer.name)
            elif refused.code == ErrorCode.FORBIDDEN:
                self.counts["request", "FORBIDDEN"] += 1
            return error_reply(refused.code, refused.message)
        except Exception:
            if self.applying:
                self.applying = False
                self.fatal(peer, frame)        # never returns in the server process
                return None
            log.exception("event=internal_error peer=%s type=%#04x", peer.name, frame.type)
            self.counts["request", "SERVER_ERROR"] += 1
            return error_reply(ErrorCode.SERVER_ERROR, "internal error; nothing was applied")

    def execute_local(self, peer: Peer, msg: m.Execute) -> Reply | None:
        """Run a container the server built itself (the Diameter front-end) on the path of
        an EXECUTE frame: checked by the codec as a client's would be (so that the log
        replays it), the fault rules, exactly once under (user, op), the limits, logged.
        Failures become ERROR replies as in `handle`. None: a fault rule took the reply
        (`take_fault` says what to do instead)."""
        self.read_only = False
        if self.stopped:
            return error_reply(ErrorCode.SERVER_ERROR, "the server stopped on an internal "
                                                       "error; nothing was applied")
        body = codec.encode_body(msg)[1]
        try:
            checked = codec.decode_body(T.EXECUTE, body)
            assert isinstance(checked, m.Execute)
            controls = self.controls
            if controls is not None and controls.faults.active:
                plan = self._plan(controls, peer, checked)
                if plan is not None:
                    return self._with_plan(peer, checked, Frame(int(T.EXECUTE), 0, 0, body),
                                           plan)
            return self._execute(peer, checked, body)
        except ProtocolError as exc:
            self.counts["request", exc.code] += 1
            return error_reply(exc.code, exc.message)
        except Refused as refused:
            return error_reply(refused.code, refused.message)
        except Exception:
            if self.applying:
                self.applying = False
                self.fatal(peer, Frame(int(T.EXECUTE), 0, 0, body))
                return error_reply(ErrorCode.SERVER_ERROR, "internal error")
            log.exception("event=internal_error peer=%s type=local_execute", peer.name)
            self.counts["request", "SERVER_ERROR"] += 1
            return error_reply(ErrorCode.SERVER_ERROR, "internal error; nothing was applied")

    def _session_to_wire(self, s: m.SessionInfo) -> dict[str, Any]:
        wire = codec.session_to_wire(s)
        origin = self.session_origin(s) if self.session_origin is not None else None
        if origin is not None:
            wire["protocol"] = origin[0]
            if origin[1] is not None:
                wire["peer"] = origin[1]
        return wire

    def acknowledge_local(self, peer: Peer, notification_id: int) -> str:
        """A renewal notification acknowledged other than by an ACK frame (a Diameter RAA):
        the renewal service's verdict, logged as an ACK is."""
        status = self.renewal.ack(peer, notification_id)
        if status == "acknowledged":
            self._log(REC_ACK, self.clock(), notification_id)
        return status

    def fatal(self, peer: Peer | None, frame: Frame | None) -> None:
        """Fail-stop: an unexpected exception while a container, an operator change or a
        batch of expiries (`peer` and `frame` None) was being applied may have left part
        of it applied in memory, never logged. Like PostgreSQL's PANIC in a critical
        section: log it with the request at CRITICAL and end the process at once (exit
        70), answering nothing and syncing nothing more; the restart rebuilds the state
        from the log, without that change."""
        what = "expiry" if frame is None else f"type={frame.type:#04x} " \
            f"request={frame.body[:2000].hex()}"
        log.critical("event=internal_error_while_applying peer=%s %s (stopping: the state "
                     "in memory may be half changed; recovery rebuilds it from the log)",
                     "-" if peer is None else peer.name, what, exc_info=True)
        self.stopped = True
        if self.on_fatal is not None:
            self.on_fatal(peer, frame)
            return
        for handler in logging.getLogger().handlers + log.handlers:
            handler.flush()
        os._exit(EXIT_FAIL_STOP)

    def _request(self, peer: Peer, msg: m.Message, frame: Frame,
                 sub_errors: dict[int, str] | None = None) -> Reply | None:
        """Handle one decoded request (errors are turned into replies by `handle`)."""
        if type(msg) is _EXECUTE:
            started = _perf_counter()
            reply = self._execute(peer, msg, frame.body, sub_errors)
            self.latency["execute"].observe(_perf_counter() - started)
            return reply
        if type(msg) is _ADMIN:
            started = _perf_counter()
            reply = self._admin_request(peer, msg, frame.body)
            self.latency["admin"].observe(_perf_counter() - started)
            return reply
        if type(msg) is m.Listen:
            self.renewal.register(peer, msg.listener_id)
            return codec.encode_body(m.ListenOk())
        if type(msg) is m.Unlisten:
            self.renewal.unregister(peer, msg.listener_id)
            return codec.encode_body(m.UnlistenOk())
        if type(msg) is m.Ack:
            self.applying = True
            status = self.renewal.ack(peer, msg.notification_id)
            if status == "acknowledged":
                self._log(REC_ACK, self.clock(), msg.notification_id)
            self.applying = False
            # request id 0: no reply; any other id: ACK_OK (whatever `confirm` says)
            return codec.encode_body(m.AckOk(status)) if frame.request_id else None
        raise AssertionError(f"unhandled request type {frame.type:#04x}")

    # ------------------------------------------------------------------ fault rules

    def _plan(self, controls: TestControls, peer: Peer, msg: m.Message) -> Plan | None:
        """What the fault rules ask of this request (None: nothing fired)."""
        conn_user = getattr(peer, "user", None)
        if isinstance(msg, m.Execute):   # a Gy peer carries the CCR the container is of
            return controls.plan_execute(msg, conn_user, getattr(peer, "traffic", None))
        if isinstance(msg, m.AdminRequest):
            if msg.command in controls.CONTROL_COMMANDS:   # the controls themselves never fail
                return None
            args = msg.args
            return controls.plan_other("ADMIN", conn_user, _text_arg(args, "user"),
                                       _text_arg(args, "session"))
        if isinstance(msg, m.Listen):
            return controls.plan_other("LISTEN", conn_user, listener=msg.listener_id)
        if isinstance(msg, m.Ack):
            return controls.plan_other("ACK", conn_user)
        return None

    def _with_plan(self, peer: Peer, msg: m.Message, frame: Frame, plan: Plan
                   ) -> Reply | None:
        """Carry out a plan (controls.py says what each action does). What concerns the
        connection (no reply, close, a late reply) is left in `fault` for it."""
        if plan.pause and self.on_pause is not None:
            self.on_pause(plan.pause)
        rule = plan.before
        if rule is not None:
            self.counts["fault", rule.action] += 1
            if rule.action == "error":
                return error_reply(str(rule.code), f"injected by fault rule {rule.id}")
            if rule.action == "busy":
                return error_reply(ErrorCode.TOO_MANY_REQUESTS,
                                   f"busy (injected by fault rule {rule.id})")
            if rule.action not in _LEFT_TO_CONNECTION:
                raise ValueError(f"fault action {rule.action!r} has no handling before apply")
            self.fault = (rule, None)          # drop-request, close-before: not applied
            return None
        reply = self._request(peer, msg, frame, plan.sub_errors)
        if plan.after is not None:
            self.counts["fault", plan.after.action] += 1
            self.fault = (plan.after, reply)
            return None
        return reply

    @staticmethod
    def log_request(peer: Peer, frame: Frame, reply: Reply | None) -> None:
        """One debug line per request (the connection calls it only with --log-level
        debug): peer, login, type, request id, body size, reply type (none: no reply)."""
        log.debug("event=request peer=%s user=%s type=%s request_id=%d bytes=%d reply=%s",
                  peer.name, getattr(peer, "user", None), type_name(frame.type),
                  frame.request_id, len(frame.body),
                  "none" if reply is None else type_name(reply[0]))

    def take_fault(self) -> tuple[Rule, Reply | None] | None:
        """The fault left for the connection by the request just handled (then cleared)."""
        fault, self.fault = self.fault, None
        return fault

    def clock_moved(self, when: float) -> None:
        """A manual clock move: logged, so that recovery restores the clock (with the
        outcome of the ADMIN command that made it, when that carried an op)."""
        clock_op = self._clock_op
        if clock_op is None:
            self._log(REC_CLOCK, when, None)
            return
        # stored now, as its record says (apply_admin's own put of it then does nothing)
        value = codec.pack({"value": TestControls.moved(when)})
        self.dedup.put(("", clock_op[0]), (T.ADMIN_RESULT, value), when, clock_op[1])
        self._log(REC_CLOCK, when, [clock_op[0], clock_op[1], int(T.ADMIN_RESULT), value])

    @staticmethod
    def _need(peer: Peer, role: str) -> None:
        if role not in peer.roles:
            raise Refused(ErrorCode.FORBIDDEN, f"this needs the role {role!r}")

    # ------------------------------------------------------------------ containers

    def _log(self, kind: int, now: float, argument: object) -> None:
        if self.wal is not None:
            self.wal(codec.pack([kind, now, argument]))

    def _execute(self, peer: Peer, msg: m.Execute, body: bytes,
                 sub_errors: dict[int, str] | None = None) -> Reply:
        key = (msg.user_id, msg.operation_id)
        body_digest = digest(body)
        stored = self.dedup.get(key, body_digest)
        if stored is not False:
            return self._repeat(msg.kind, key, stored)
        if self.dedup.full:
            return self._no_slot(peer, msg.kind)
        now = self.clock()
        try:
            self.limits.check_execute(msg)
        except Refused as exc:
            self._limit_hit(exc.code, peer)
            return self._remember(key, body_digest, exc.code, exc.message, now, msg.kind)
        self.applying = True
        reply = self._run_execute(msg, now, body_digest, sub_errors)
        if sub_errors:
            self._log(REC_EXECUTE_FAULTED, now, [body, sorted(sub_errors.items())])
        else:
            self._log(REC_EXECUTE, now, body)
        self.applying = False
        self._notify(now)
        return reply

    def _invalid_execute(self, peer: Peer, body: bytes, exc: InvalidMessage) -> Reply:
        """An EXECUTE that failed validation: remembered if its user and op are valid."""
        self._limit_hit(exc.code, peer)
        key = exc.operation
        if key is None:
            self.counts["request", exc.code] += 1
            return error_reply(exc.code, exc.message)
        body_digest = digest(body)
        stored = self.dedup.get(key, body_digest)
        if stored is not False:
            return self._repeat("request", key, stored)
        if self.dedup.full:
            return self._no_slot(peer, "request")
        return self._remember(key, body_digest, exc.code, exc.message, self.clock(), "request")

    def _repeat(self, kind: str, key: Key, stored: Reply | bool) -> Reply:
        """The answer to an operation id seen before: its outcome, or OPERATION_ID_REUSED
        when it came with another body."""
        if stored is True:
            self.counts[kind, ErrorCode.OPERATION_ID_REUSED] += 1
            return error_reply(ErrorCode.OPERATION_ID_REUSED, (
                f"operation id {key[1].hex()} was used for another request (another body) "
                "within the exactly-once window; nothing was applied: give each operation "
                "its own id"))
        self.counts[kind, "repeated"] += 1
        assert stored is not False
        return stored

    def _no_slot(self, peer: Peer, kind: str) -> Reply:
        """A new operation while the store of outcomes is full: refused, unapplied, not
        remembered (a retry once entries age out is applied)."""
        dedup = self.dedup
        dedup.refused += 1
        self.counts[kind, ErrorCode.TOO_MANY_REQUESTS] += 1
        if self.on_dedup_full is not None:
            self.on_dedup_full(peer.name)
        return error_reply(ErrorCode.TOO_MANY_REQUESTS, (
            f"the server holds the outcomes of {len(dedup)} operations, its bound "
            f"(--dedup-max-entries {dedup.max_entries}), and forgets none inside its "
            f"{dedup.window:g} s window; nothing was applied: retry later"))

    def _remember(self, key: Key, body_digest: bytes, code: ErrorCode, message: str,
                  now: float, kind: str) -> Reply:
        """Store (and log) a whole-request failure decided before the engine ran."""
        self.counts[kind, code] += 1
        reply = error_reply(code, message)
        self.applying = True
        self.dedup.put(key, reply, now, body_digest)
        self._log(REC_REMEMBER, now, [key[0], key[1], body_digest, reply[0], reply[1]])
        self.applying = False
        return reply

    def _limit_hit(self, code: ErrorCode, peer: Peer) -> None:
        if code in LIMIT_CODES and self.on_limit is not None:
            self.on_limit(code, peer.name)

    def apply_execute(self, msg: m.Execute, now: float, body_digest: bytes = ANY_BODY,
                      sub_errors: dict[int, str] | None = None) -> Reply:
        """Run a container and remember its outcome (replaying the log; live, `_execute`
        logs it too); `sub_errors`: sub-requests a fault rule fails (index -> code)."""
        self.applying = True
        reply = self._run_execute(msg, now, body_digest, sub_errors)
        self.applying = False
        self.flush_renewals(now)
        return reply

    def _run_execute(self, msg: m.Execute, now: float, body_digest: bytes,
                     sub_errors: dict[int, str] | None) -> Reply:
        key = (msg.user_id, msg.operation_id)
        try:
            result = self.engine.execute(msg, now, sub_errors)
            reply: Reply = codec.encode_body(result)
            self.counts[msg.kind, "ok"] += 1
        except Refused as exc:
            reply = error_reply(exc.code, exc.message)
            self.counts[msg.kind, exc.code] += 1
        self.dedup.put(key, reply, now, body_digest)
        return reply

    def flush_renewals(self, now: float) -> None:
        """Hand charging sessions due a renewal notification to the renewal service. If
        that fails, each is tried alone and those that fail again go back to the engine
        (the next timer run tries them again): none is lost; the error is raised."""
        engine = self.engine
        if engine.renewals:
            due = engine.take_renewals()
            try:
                self.renewal.submit(due, now)
            except Exception:
                for cs, reason in due.items():
                    try:
                        self.renewal.submit({cs: reason}, now)
                    except Exception:
                        engine.renewals.setdefault(cs, reason)
                raise

    def _notify(self, now: float) -> None:
        """`flush_renewals` after a change was applied and logged: outside the fail-stop
        window, so an error is counted and logged (rate-limited), never fatal."""
        try:
            self.flush_renewals(now)
        except Exception as exc:
            self.notify_failures += 1
            self.events.warning("notify_failed", "error=%r (the change was applied and "
                                "logged; the renewals are tried again by the timer)", exc)

    # ------------------------------------------------------------------ operator

    def expire(self, now: float, limit: int) -> int:
        """Clean up reservations due by `now`; when any were, log which, in order."""
        self.applying = True          # a failure half-way is a fail-stop (server.py)
        due = self.engine.expire_due(now, limit)
        if due:
            self._log(REC_EXPIRED, now,
                      [[cs.session.session_id, cs.reservation_id] for cs in due])
        self.applying = False
        if due:
            self._notify(now)
        return len(due)

    def refill(self, now: float) -> int:
        """Refill the allowances whose period started by `now` (logged as the decision
        taken, so that replay refills the same counters at the same period starts)."""
        starts = refills.due(self.engine, now)
        if starts is None:
            return 0
        self.applying = True          # a failure half-way is a fail-stop (server.py)
        done = refills.apply(self.engine, now, starts)
        self._log(REC_REFILL, now, [[every, start] for every, start in starts])
        self.applying = False
        return done

    def set_catalog(self, catalog: Catalog) -> None:
        """Price by `catalog` (read from a file) from now on; logged with the file's
        content, so that replay prices every later record by it."""
        if catalog.source is None:
            raise ValueError("only a catalog read from a file can be logged")
        self.applying = True
        self.engine.catalog = catalog
        self._log(REC_CATALOG, self.clock(), catalog.source)
        self.applying = False

    def _admin_request(self, peer: Peer, msg: m.AdminRequest, body: bytes) -> Reply:
        self.read_only = msg.command in READ_ONLY_ADMIN
        self.limits.check_admin(msg.args)
        now = self.clock()
        body_digest = digest(body)
        if msg.operation_id and msg.command in MUTATING_ADMIN:
            key = ("", msg.operation_id)
            stored = self.dedup.get(key, body_digest)
            if stored is not False:
                return self._repeat(msg.command, key, stored)
            if self.dedup.full and msg.command not in CLOCK_MOVES:   # they age outcomes out
                return self._no_slot(peer, msg.command)
        if msg.operation_id and msg.command in CLOCK_MOVES:
            # the move's REC_CLOCK record carries its outcome (clock_moved): one record
            self._clock_op = (msg.operation_id, body_digest)
        logged = msg.command in LOGGED_ADMIN
        self.applying = msg.command in APPLIED_ADMIN   # read-only commands change nothing
        try:
            reply = self._run_admin(msg, now, body_digest)
        finally:
            self._clock_op = None
        if logged:
            self._log(REC_ADMIN, now, body)
        self.applying = False
        self._notify(now)
        return reply

    def apply_admin(self, msg: m.AdminRequest, now: float,
                    body_digest: bytes = ANY_BODY) -> Reply:
        """Run an operator command (replaying the log; live, `_admin_request` logs it)."""
        self.applying = msg.command in APPLIED_ADMIN   # read-only commands change nothing
        reply = self._run_admin(msg, now, body_digest)
        self.applying = False
        self.flush_renewals(now)
        return reply

    def _run_admin(self, msg: m.AdminRequest, now: float, body_digest: bytes) -> Reply:
        key = ("", msg.operation_id) if msg.operation_id and msg.command in MUTATING_ADMIN \
            else None
        try:
            value = self._admin[msg.command](dict(msg.args), now)
            body = codec.pack({"value": value})
            if len(body) > self.max_reply and msg.command in PAGED:
                body = self._fit(msg.command, value)
            reply: Reply = T.ADMIN_RESULT, body
            self.counts[msg.command, "ok"] += 1
        except Refused as exc:
            # refused before anything was applied: not stored (PROTOCOL.md section 8)
            reply = error_reply(exc.code, exc.message)
            self.counts[msg.command, exc.code] += 1
            key = None
        if key is not None:
            # a clock move's window starts at the clock's new time, or it would be over
            # as soon as the timers run
            self.dedup.put(key, reply, now if msg.command in LOGGED_ADMIN else self.clock(),
                           body_digest)
        return reply

    def _fit(self, command: str, items: list[Any]) -> bytes:
        """The body of a listing's first items that fit `max_reply`, with `next` (at least
        one item, so paging always moves on)."""
        budget = self.max_reply - REPLY_OVERHEAD
        used = count = 0
        for item in items:
            used += len(codec.pack(item))
            if count and used > budget:
                break
            count += 1
        page = items[:count]
        return codec.pack({"value": page, "next": _cursor(command, page[-1])})

    def _catalog(self, args: dict[str, Any], now: float) -> list[dict[str, Any]]:
        """The price plans (of one service with `service`), ordered by service and item."""
        service = args.get("service")
        return [{"service": p.service_id, "item": p.item, "quantity": p.quantity,
                 "step": p.step, "prices": dict(p.prices), "allowance": p.allowance}
                for key, p in sorted(self.engine.catalog.plans.items())
                if service is None or key[0] == service]

    def admin_local(self, command: str, args: dict[str, Any]) -> Reply:
        """Run (and log) an operator command issued by the server itself."""
        msg = m.AdminRequest(command, args)
        now = self.clock()
        self.applying = command in LOGGED_ADMIN
        reply = self._run_admin(msg, now, ANY_BODY)
        if command in LOGGED_ADMIN:
            self._log(REC_ADMIN, now, codec.encode_body(msg)[1])
        self.applying = False
        self._notify(now)
        return reply

    def _create_subscriber(self, args: dict[str, Any], now: float) -> Any:
        return codec.subscriber_to_wire(self.engine.create_subscriber(
            args["user"], args["balance"], args.get("currency") or "EUR",
            args.get("counters") or {}, args.get("plan")))

    def _transactions(self, args: dict[str, Any], now: float) -> Any:
        limit = min(args.get("limit") or TX_PAGE, TX_PAGE)
        return [codec.tx_to_wire(t) for t in self.engine.transactions(
            args.get("user"), args.get("session"), args.get("after"), limit)]

    def _request_renewal(self, args: dict[str, Any], now: float) -> Any:
        cs = self.engine.request_renewal(args["session"], args["rid"])
        if cs.session.listener_id is None:
            self.engine.take_renewals()
            raise Refused(ErrorCode.INVALID_REQUEST,
                          "the session has no renewal listener id (set it at start)")
        if self.renewal.would_drop(cs):
            self.engine.take_renewals()
            raise Refused(ErrorCode.TOO_MANY_NOTIFICATIONS,
                          f"listener {cs.session.listener_id} has too many pending "
                          "notifications; retry once some are acknowledged or expired")
        return None

    def replay(self, payload: bytes) -> None:
        """Apply one write-ahead-log record again (recovery; nothing is logged). A record
        of an unknown kind, or one that does not fit the state, raises ValueError."""
        kind, now, argument = codec.unpack(payload)
        # outcomes past their window by this record's time had left the live server by
        # then (its timers run at least as often as records are made)
        self.dedup.expire(now)
        if kind == REC_EXECUTE:
            msg = codec.decode_body(T.EXECUTE, argument)
            assert isinstance(msg, m.Execute)
            self.apply_execute(msg, now, digest(argument))
        elif kind == REC_EXECUTE_FAULTED:
            faulted = codec.decode_body(T.EXECUTE, argument[0])
            assert isinstance(faulted, m.Execute)
            self.apply_execute(faulted, now, digest(argument[0]),
                               {int(i): str(code) for i, code in argument[1]})
        elif kind == REC_CLOCK:
            if self.controls is not None:
                self.controls.restore_clock(now)
            if argument is not None:      # the outcome of the ADMIN command that moved it
                op, clock_digest, msg_type, value = argument
                self.dedup.put(("", op), (msg_type, value), now, clock_digest)
        elif kind == REC_ADMIN:
            admin = codec.decode_body(T.ADMIN, argument)
            assert isinstance(admin, m.AdminRequest)
            self.apply_admin(admin, now, digest(argument))
        elif kind == REC_REMEMBER:
            user, op, body_digest, msg_type, body = argument
            self.dedup.put((user, op), (msg_type, body), now, body_digest)
        elif kind == REC_EXPIRED:
            try:
                self.engine.expire_these(now, [(str(s), str(r)) for s, r in argument])
            except KeyError as exc:
                raise ValueError(f"log record does not fit the state: {exc}") from None
            self.flush_renewals(now)
        elif kind == REC_EXPIRE:      # older logs: the trigger, not the decision
            self.engine.expire(now, argument)
            self.flush_renewals(now)
        elif kind == REC_ACK:
            self.renewal.acknowledge(argument)
        elif kind == REC_CATALOG:
            self.engine.catalog = Catalog.from_dict(argument, "catalog reloaded (log)")
        elif kind == REC_REFILL:
            refills.apply(self.engine, now, [(str(e), float(t)) for e, t in argument])
        else:
            raise ValueError(f"unknown log record kind {kind!r}")

    def stats(self) -> dict[str, Any]:
        """Operation counts and state sizes."""
        stats: dict[str, Any] = {
            "engine": self.engine.stats(),
            "operations": {f"{kind}.{outcome}": n for (kind, outcome), n in self.counts.items()},
            "sub_requests": {f"{action}.{error or 'ok'}": n
                             for (action, error), n in self.engine.counts.items()},
            "latency": {kind: h.to_dict() for kind, h in self.latency.items()},
            "dedup": {"entries": len(self.dedup), "hits": self.dedup.hits,
                      "max_entries": self.dedup.max_entries,
                      "refused_full": self.dedup.refused}}
        renewal = getattr(self.renewal, "stats", None)
        if renewal is not None:
            stats["renewal"] = renewal()
        for name, section in self.stats_sections.items():
            value = section()
            if value is not None:
                stats[name] = value
        return stats

