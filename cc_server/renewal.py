"""Reservation renewal notifications (SPEC section 4): registry, schedule, delivery.

Registrations: listener id -> connections in registration order; the earliest live one is
the primary, the others are backups.

Schedule of one notification (times from its first attempt t0, all configurable):
- attempt 1 at t0 goes to the primary; attempt k+1 at t0 + k * resend_interval, for at most
  `resend_attempts` resends (0: send once);
- an attempt goes to the next registrant (round robin) once the previous target has had
  `send_timeout` without acknowledging, else to the same one;
- the schedule runs whether or not anyone is registered, so a listener that registers late
  gets the next attempt; nothing is sent at or after the charging session's expiry;
- an acknowledgement ends it; so does the charging session ending or, for a credit
  notification, getting its reservation back.
One pending notification per charging session: a new trigger while one is pending reuses it.
At most `max_pending` notifications are pending per listener id: a trigger past that is
dropped, counted (`dropped_over_limit`) and logged, so no listener id, registered or not,
can make the server hold an unbounded amount of work.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

from protocol import messages as m

from .engine import ChargingSession
from .ratelog import RateLimitedLog

UTC = dt.UTC
ACK_MEMORY = 100_000   # recently acknowledged ids, to answer "already_acknowledged"
DEFAULT_MAX_PENDING = 10_000   # pending notifications per listener id


class Pending:
    """One notification until acknowledged, given up, or no longer needed."""

    __slots__ = ("attempt", "cs", "listener_id", "next_at", "notification_id", "reason",
                 "sent_at", "target")

    def __init__(self, notification_id: int, cs: ChargingSession, listener_id: int,
                 reason: m.RenewalReason, now: float) -> None:
        self.notification_id = notification_id
        self.cs = cs
        self.listener_id = listener_id
        self.reason = reason
        self.attempt = 0              # attempts made so far
        self.next_at = now
        self.target: Any = None       # connection of the latest delivered attempt
        self.sent_at = 0.0            # first delivery to `target`: its send timeout runs from here


class RenewalService:
    """Listener registry and notification delivery, driven by `submit` and `tick`."""

    def __init__(self, send_timeout: float = 0.5, resend_interval: float = 1.0,
                 resend_attempts: int = 10, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.send_timeout = send_timeout
        self.resend_interval = resend_interval
        self.resend_attempts = resend_attempts
        self.max_pending = max_pending
        self.listeners: dict[int, list[Any]] = {}
        self.pending: dict[ChargingSession, Pending] = {}
        self._per_listener: Counter[int] = Counter()
        self._log = RateLimitedLog(logging.getLogger("cc_server"))
        self._by_id: dict[int, Pending] = {}
        self._heap: list[tuple[float, int, Pending]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._acked: OrderedDict[int, None] = OrderedDict()
        self.counts: Counter[str] = Counter()
        #: test controls: the notification fault rules that fire for an attempt
        self.notify_faults: Callable[[m.Notification], list[Any]] | None = None
        #: test controls: run a callable after some seconds (for delay-notify)
        self.later: Callable[[float, Callable[[], Any]], Any] | None = None

    # ------------------------------------------------------------------ registry

    def register(self, peer: Any, listener_id: int) -> None:
        """`peer` listens for `listener_id` (idempotent; keeps its place)."""
        peers = self.listeners.setdefault(listener_id, [])
        if peer not in peers:
            peers.append(peer)

    def unregister(self, peer: Any, listener_id: int) -> None:
        """`peer` stops listening for `listener_id`."""
        peers = self.listeners.get(listener_id)
        if peers and peer in peers:
            peers.remove(peer)
            if not peers:
                del self.listeners[listener_id]

    def connection_lost(self, peer: Any) -> None:
        """Drop every registration of a closed connection."""
        for listener_id in [lid for lid, peers in self.listeners.items() if peer in peers]:
            self.unregister(peer, listener_id)

    # ------------------------------------------------------------------ triggers

    def submit(self, due: dict[ChargingSession, m.RenewalReason], now: float) -> None:
        """Charging sessions due a notification: create (or reuse) and send attempt 1."""
        for cs, reason in due.items():
            listener_id = cs.session.listener_id
            if listener_id is None or not cs.open or cs.expires_at <= now:
                continue
            existing = self.pending.get(cs)
            if existing is not None:
                self.counts["reused"] += 1
                if reason is m.RenewalReason.OPERATOR:
                    existing.reason = reason
                continue
            if self._per_listener[listener_id] >= self.max_pending:
                self.counts["dropped_over_limit"] += 1
                self._log.warning("notification_dropped", "listener=%d pending=%d session=%r",
                                  listener_id, self.max_pending, cs.session.session_id[:64])
                continue
            note = self._add(Pending(next(self._ids), cs, listener_id, reason, now))
            self.counts["created"] += 1
            self._attempt(note, now)

    def would_drop(self, cs: ChargingSession) -> bool:
        """Whether a new trigger for `cs` would be dropped for its listener's limit."""
        listener_id = cs.session.listener_id
        return cs not in self.pending and listener_id is not None \
            and self._per_listener[listener_id] >= self.max_pending

    def _add(self, note: Pending) -> Pending:
        self.pending[note.cs] = note
        self._by_id[note.notification_id] = note
        self._per_listener[note.listener_id] += 1
        return note

    def ack(self, peer: Any, notification_id: int) -> str:
        """An acknowledgement from `peer`: "acknowledged", "already_acknowledged" or
        "unknown" (also for a peer not registered for the notification's listener)."""
        note = self._by_id.get(notification_id)
        if note is None:
            return "already_acknowledged" if notification_id in self._acked else "unknown"
        if peer not in self.listeners.get(note.listener_id, ()):
            return "unknown"
        self.acknowledge(notification_id)
        return "acknowledged"

    def acknowledge(self, notification_id: int) -> None:
        """End a pending notification (an ack, or its replay from the log)."""
        note = self._by_id.get(notification_id)
        if note is not None:
            self._finish(note, "acknowledged")
        self._acked[notification_id] = None
        if len(self._acked) > ACK_MEMORY:
            self._acked.popitem(last=False)

    # ------------------------------------------------------------------ schedule

    def tick(self, now: float) -> float | None:
        """Make every attempt due by `now`; returns the next due time, or None."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, note = heapq.heappop(heap)
            if self._by_id.get(note.notification_id) is note and note.next_at == at:
                self._attempt(note, now)
        return heap[0][0] if heap else None

    def _attempt(self, note: Pending, now: float) -> None:
        cs = note.cs
        if not cs.open or not cs.alive:
            self._finish(note, "obsolete")
            return
        if note.reason is m.RenewalReason.CREDIT_AVAILABLE and not (cs.starved or cs.reduced):
            self._finish(note, "obsolete")       # it got its reservation back meanwhile
            return
        if now >= cs.expires_at or note.attempt > self.resend_attempts:
            self._finish(note, "expired_unacknowledged")
            return
        note.attempt += 1
        target = self._target(note, now)
        if target is not None:
            msg = self._message(note)
            if not self._push(target, msg):   # paused (not reading) or closing: the others
                target = next((peer for peer in self.listeners[note.listener_id]
                               if peer is not target and self._push(peer, msg)), None)
        if target is not None:
            if target is not note.target:
                note.target, note.sent_at = target, now
            self.counts["sent" if note.attempt == 1 else "resent"] += 1
        else:
            self.counts["undeliverable"] += 1
        if note.attempt > self.resend_attempts:      # that was the last one
            note.next_at = min(cs.expires_at, now + max(self.send_timeout,
                                                         self.resend_interval))
        else:
            note.next_at = now + self.resend_interval
        heapq.heappush(self._heap, (note.next_at, next(self._seq), note))

    def _push(self, peer: Any, msg: m.Notification) -> bool:
        """Send one attempt, as the notification fault rules say (drop-notify: it counts
        as made but never leaves; delay-notify: it leaves later; duplicate-notify: twice)."""
        if self.notify_faults is None:
            return self._send(peer, msg)
        rules = self.notify_faults(msg)
        if not rules:
            return self._send(peer, msg)
        actions = {rule.action: rule for rule in rules}
        if "drop-notify" in actions:
            self.counts["fault_dropped"] += 1
            return True
        copies = 2 if "duplicate-notify" in actions else 1
        delay = actions.get("delay-notify")
        if delay is not None and self.later is not None:
            self.counts["fault_delayed"] += 1
            for _ in range(copies):
                self.later(delay.delay(), lambda: self._send(peer, msg))
            return True
        sent = self._send(peer, msg)
        if sent and copies == 2:
            self.counts["fault_duplicated"] += 1
            self._send(peer, msg)
        return sent

    def _send(self, peer: Any, msg: m.Notification) -> bool:
        """`peer.push(msg)`; an error there (a bug in a socket write) counts as not sent
        (`push_failed`, logged rate-limited): the schedule goes on, nothing stops."""
        try:
            return bool(peer.push(msg))
        except Exception as exc:
            self.counts["push_failed"] += 1
            self._log.warning("notification_push_failed", "peer=%s notification=%d error=%r",
                              getattr(peer, "name", "?"), msg.notification_id, exc)
            return False

    def _target(self, note: Pending, now: float) -> Any:
        peers = self.listeners.get(note.listener_id)
        if not peers:
            return None
        previous = note.target
        if previous is None or previous not in peers:
            return peers[0]
        if now - note.sent_at < self.send_timeout:
            return previous
        return peers[(peers.index(previous) + 1) % len(peers)]

    def _message(self, note: Pending) -> m.Notification:
        cs = note.cs
        session = cs.session
        return m.Notification(note.notification_id, note.listener_id, session.session_id,
                              cs.reservation_id, session.user_id, session.service_id,
                              note.reason, dt.datetime.fromtimestamp(cs.expires_at, UTC),
                              note.attempt,
                              session.external_data)

    def _finish(self, note: Pending, outcome: str) -> None:
        self.counts[outcome] += 1
        if self._by_id.pop(note.notification_id, None) is not None:
            left = self._per_listener[note.listener_id] - 1
            if left > 0:
                self._per_listener[note.listener_id] = left
            else:
                del self._per_listener[note.listener_id]
        if self.pending.get(note.cs) is note:
            del self.pending[note.cs]

    # ------------------------------------------------------------------ persistence

    def to_state(self) -> dict[str, Any]:
        """Pending notifications as plain data (for snapshots)."""
        return {"next_id": self._peek_id(),
                "pending": [[n.notification_id, n.cs.session.session_id, n.cs.reservation_id,
                             n.listener_id, n.reason, n.attempt, n.next_at]
                            for n in self.pending.values()]}

    def restore(self, state: dict[str, Any], find: Any) -> None:
        """Reload pending notifications; `find(session_id, reservation_id)` gives the
        charging session (or None when it no longer exists)."""
        self._ids = itertools.count(state["next_id"])
        for nid, sid, rid, listener_id, reason, attempt, next_at in state["pending"]:
            cs = find(sid, rid)
            if cs is None:
                continue
            note = Pending(nid, cs, listener_id, m.RenewalReason(reason), next_at)
            note.attempt = attempt
            self._add(note)
            heapq.heappush(self._heap, (next_at, next(self._seq), note))

    def _peek_id(self) -> int:
        nid = next(self._ids)
        self._ids = itertools.count(nid)
        return nid

    def stats(self) -> dict[str, int]:
        """Counts for admin.stats()."""
        return {"listeners": sum(len(p) for p in self.listeners.values()),
                "pending": len(self.pending), **self.counts}

