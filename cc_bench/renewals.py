"""`--renewals`: sessions starved on purpose, then topped up; times the notification.

A renewal subscriber holds exactly one reservation's worth of credit. Its session reserves
it all, confirms it all and asks for as much again (starved: CREDIT_LIMIT_REACHED, the
plan), then the subscriber is topped up by that amount: available credit rises, so the
server sends a renewal notification to the listener registered on the first connection.
Its latency runs from the top-up request to the handler. The stop cancels (nothing held),
which leaves the subscriber as it was, ready for the next such session.
"""

from __future__ import annotations

import asyncio
from collections import deque
from time import perf_counter_ns
from typing import TYPE_CHECKING

from cc_client import ChargingError, Client, RenewalNotification

if TYPE_CHECKING:
    from .workload import Workload


class Renewals:
    """The starvable subscribers, and the sessions waiting for their notification."""

    def __init__(self, workload: Workload, users: list[str], amount: str) -> None:
        self.w = workload
        self.pool: deque[str] = deque(users)
        self.amount = amount
        self._waiting: dict[str, tuple[asyncio.Future[None], int, bool]] = {}

    async def session(self, client: Client, n: int, measured: bool, t0: int) -> None:
        """A session starved on purpose, then a top-up; times the notification it causes."""
        w = self.w
        s = w.s
        user = self.pool.popleft()
        sid = f"{w.prefix}-n{n}"
        stats = w.stats
        rid = "r0"
        record = measured and w.measuring
        kind = "start"
        try:
            op = client.create_session_start_operation(user, s.service, sid)
            op.set_reservation_renewal_listener_id(s.listener_id)
            op.prepare_reserve(rid, w.reserve_item, s.ttl)
            result = await op.execute()
            t1 = w.last_reply = perf_counter_ns()
            if record:   # as sent: the rest of the session is counted (or not) with it
                stats["start"].hist.record(t1 - t0)
            if not result.ok:
                w.count_failed("start", result, measured)
                return
            kind = "update"   # consume it all, ask for as much again: starved
            up = client.create_session_update_operation(user, s.service, sid)
            up.prepare_confirm_and_reserve(rid, w.full_item, None, -1)
            t0 = perf_counter_ns()
            result = await up.execute()
            t1 = w.last_reply = perf_counter_ns()
            if record:
                stats["update"].hist.record(t1 - t0)
            outcome = result.get(rid)
            if outcome is None or outcome.error is None or \
                    outcome.error.code != "CREDIT_LIMIT_REACHED":
                if record:
                    stats["notification"].errors["NOT_STARVED"] += 1
            else:
                w.starved += 1
                await self._top_up_and_wait(client, user, sid, record)
            kind = "stop"
            stop = client.create_session_stop_operation(user, s.service, sid)
            stop.prepare_cancel(rid)
            t0 = perf_counter_ns()
            result = await stop.execute()
            t1 = w.last_reply = perf_counter_ns()
            if record:
                stats["stop"].hist.record(t1 - t0)
            if not result.ok:
                w.count_failed("stop", result, measured)
        except ChargingError as exc:
            w.count_error(kind, exc, record)
        except asyncio.CancelledError:
            w.count_cut_off(kind, record)
            raise
        finally:
            self.pool.append(user)
            if measured and w.measuring:
                w.completed += 1

    async def _top_up_and_wait(self, client: Client, user: str, sid: str, record: bool) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        t0 = perf_counter_ns()
        self._waiting[sid] = (fut, t0, record)
        try:
            await client.admin.top_up(user, self.amount)
            self.w.last_reply = perf_counter_ns()
            if record:
                self.w.stats["top_up"].hist.record(perf_counter_ns() - t0)
            await asyncio.wait_for(fut, self.w.s.notification_timeout)
        except TimeoutError:
            if record:
                self.w.stats["notification"].errors["TIMEOUT"] += 1
        except ChargingError as exc:
            self.w.count_error("top_up", exc, record)
        finally:
            self._waiting.pop(sid, None)

    def on_notification(self, note: RenewalNotification) -> None:
        """Renewal handler: time from the top-up request to here (first delivery only)."""
        entry = self._waiting.pop(note.session_id, None)
        if entry is None:
            return
        fut, t0, record = entry
        if record and self.w.measuring:
            self.w.stats["notification"].hist.record(perf_counter_ns() - t0)
        if not fut.done():
            fut.set_result(None)
