"""The load: closed loop (N sessions in flight) or open loop (sessions offered at a rate).

A session is one start container with M reservations, U update containers (one
confirm-and-reserve per reservation) and one stop container confirming them all. Each
container is timed on its own. In the closed loop a container's latency runs from just
before `execute()` to its return; in the open loop a start's latency runs from the
session's *intended* start time (`t0 + i / rate`), so a stall that delays sending is
counted rather than hidden (no coordinated omission); the containers that follow within
the session are sent the moment their predecessor returns and are timed from then.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Coroutine
from time import perf_counter_ns
from typing import Any

from cc_client import (
    ChargeableItem,
    ChargingError,
    Client,
    CommunicationFailure,
    ResultType,
    SessionResult,
)

from .histogram import Histogram
from .pacer import Pacer
from .renewals import Renewals
from .settings import Settings

COMMUNICATION_FAILURE = "COMMUNICATION_FAILURE"   # the code of a request left unanswered
CONTAINER_KINDS = ("start", "update", "stop")
RESULT_TYPES = {"all": ResultType.ALL_TRANSACTIONS, "master": ResultType.MASTER_TRANSACTION,
                "none": ResultType.NO_TRANSACTIONS}


class OpStats:
    """Latency histogram and error counts of one operation kind."""

    __slots__ = ("errors", "hist", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.hist = Histogram()
        self.errors: Counter[str] = Counter()

    @property
    def error_count(self) -> int:
        """All errors of this kind."""
        return sum(self.errors.values())


class Workload:
    """Drives the clients; `run()` returns once the measured period and the drain end."""

    def __init__(self, settings: Settings, clients: list[Client], users: list[str],
                 prefix: str, renewal_users: list[str] | None = None,
                 renewal_amount: str = "0") -> None:
        self.s = settings
        self.clients = clients
        self.users = users
        self.prefix = prefix
        kinds = ["ping"] if settings.op == "ping" else list(CONTAINER_KINDS)
        if settings.renewals:
            kinds += ["top_up", "notification"]
        self.stats = {name: OpStats(name) for name in kinds}
        self.measuring = False
        self.stopping = False
        self.measure_start = 0       # perf_counter_ns
        self.measure_end = 0
        self.started = 0             # measured sessions started
        self.completed = 0           # measured sessions ended (however)
        self.starved = 0             # renewal sessions starved as planned
        self._next = 0
        self._deadline_handle: asyncio.TimerHandle | None = None
        self._finished = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[None]] = set()   # open loop: sessions in flight
        self.pacer: Pacer | None = None
        self._active = 0
        self.on_begin: Callable[[], None] | None = None   # measured period starts / ends
        self.on_end: Callable[[], None] | None = None
        #: what one (non-renewal) session does; `--protocol diameter` puts gy_workload's here
        self.run_session: Callable[[Client, int, bool, int], Coroutine[Any, Any, None]] = \
            self._session
        # pre-built objects the sessions reuse
        q = settings.quantity
        prop = settings.quantity_property or "unused"   # settled at set-up (pings: no items)
        self.rids = [f"r{i}" for i in range(settings.reservations)]
        self.reserve_item = ChargeableItem(settings.item, {prop: q})
        self.confirm_item = ChargeableItem(settings.item, {prop: max(1, q * 4 // 5)})
        self.final_item = ChargeableItem(settings.item, {prop: max(1, q // 5)})
        self.full_item = ChargeableItem(settings.item, {prop: q})
        self.result_type = RESULT_TYPES.get(settings.result_type or "")
        self.renewals = Renewals(self, renewal_users or [], renewal_amount) \
            if settings.renewals else None
        self.renewal_every = max(1, round(1 / settings.renewal_ratio))
        # The server is gone when every connection stays lost for `down_grace`, or when a
        # request goes unanswered with no reply at all for a request timeout: the run is
        # then aborted, measured up to the last reply, and nothing waits for the rest.
        self.last_reply = 0          # perf_counter_ns of the latest reply (any kind)
        self.first_sent = 0          # when the load began
        self.down_grace = min(1.0, settings.request_timeout / 4)
        self.aborted: str | None = None

    # ------------------------------------------------------------------ control

    def _take(self) -> tuple[int, bool]:
        """The next session number and whether it is measured; -1 when none is left."""
        if self.stopping:
            return -1, False
        if self.measuring:
            limit = self.s.sessions
            if limit is not None and self.started >= limit:
                return -1, False
            self.started += 1
            n = self._next
            self._next = n + 1
            return n, True
        n = self._next
        self._next = n + 1
        return n, False

    def begin_measure(self) -> None:
        """Start recording (after the warm-up)."""
        if self.on_begin is not None:
            self.on_begin()
        self.measure_start = perf_counter_ns()
        self.measuring = True
        duration = self.s.run_duration
        if duration is not None:
            self._deadline_handle = asyncio.get_running_loop().call_later(duration,
                                                                          self.end_measure)

    def end_measure(self, at: int | None = None) -> None:
        """Stop recording and stop starting sessions (those in flight finish, unrecorded);
        `at`: when the measured period ended, if earlier than now."""
        if self.measuring:
            self.measure_end = perf_counter_ns() if at is None else max(at, self.measure_start)
            self.measuring = False
            if self.on_end is not None:
                self.on_end()
        self.stopping = True
        self._finished.set()

    def count_error(self, kind: str, exc: ChargingError, record: bool) -> None:
        """Count a whole-request failure; one unanswered while nothing else was answered
        for a request timeout ends the run."""
        if record:
            self.stats[kind].errors[exc.code] += 1
        if isinstance(exc, CommunicationFailure):
            silent = (perf_counter_ns() - max(self.last_reply, self.first_sent)) / 1e9
            if silent >= self.s.request_timeout:
                self.abort(f"no reply from the server for {silent:.1f} s: {exc.message}")

    def count_cut_off(self, kind: str, record: bool) -> None:
        """A request in flight when the run was aborted: unanswered."""
        if record and self.aborted is not None:
            self.stats[kind].errors[COMMUNICATION_FAILURE] += 1

    def abort(self, reason: str) -> None:
        """The server is gone: end the run now, measured up to the last reply."""
        if self.aborted is None:
            self.aborted = reason
            self.end_measure(at=self.last_reply)
            for task in self._tasks:   # what is in flight will not be answered
                task.cancel()

    async def _watch_connections(self) -> None:
        """Abort once every client has been without a connection for `down_grace`."""
        period = self.down_grace / 4
        down_since: float | None = None
        loop = asyncio.get_running_loop()
        while True:   # through the drain too; run() cancels it
            await asyncio.sleep(period)
            if any(client.connected for client in self.clients):
                down_since = None
            elif down_since is None:
                down_since = loop.time()
            elif loop.time() - down_since >= self.down_grace:
                n = len(self.clients)
                self.abort(f"connection to the server lost: {'all ' if n > 1 else ''}{n} "
                           f"connection{'s' if n > 1 else ''} down for {self.down_grace:g} s")

    @property
    def elapsed(self) -> float:
        """Seconds of the measured period (so far, while it runs)."""
        if not self.measure_start:
            return 0.0
        end = self.measure_end if self.measure_end else perf_counter_ns()
        return (end - self.measure_start) / 1e9

    async def run(self) -> None:
        """Warm up, measure, drain."""
        loop = asyncio.get_running_loop()
        self.first_sent = perf_counter_ns()
        if self.s.warmup <= 0:
            self.begin_measure()
        tasks: list[asyncio.Task[None]]
        if self.s.open_loop:
            tasks = [loop.create_task(self._pace())]
        else:
            runner = self._ping_worker if self.s.op == "ping" else self._session_worker
            tasks = [loop.create_task(runner(self.clients[i % len(self.clients)]))
                     for i in range(self.s.in_flight)]
        self._active = len(tasks)
        self._tasks = tasks
        watch = loop.create_task(self._watch_connections())
        # Also when the hard time limit cancels us, leave nothing running. The clean-up
        # awaits, so it runs after the handler, not in it: compiled (mypyc), an await
        # inside `finally`/`except` left the CancelledError being handled behind, and
        # the next run in the process raised it from an unrelated await.
        error: BaseException | None = None
        try:
            await self._load(tasks)
        except BaseException as exc:
            error = exc
        self.end_measure()
        watch.cancel()
        late = [task for task in tasks if not task.done()]
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=1.0)
        if self._deadline_handle is not None:
            self._deadline_handle.cancel()
        if error is not None:
            raise error

    async def _load(self, tasks: list[asyncio.Task[None]]) -> None:
        if self.s.warmup > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), self.s.warmup)
            if not self.stopping:
                self.begin_measure()
        await self._finished.wait()
        if self.aborted is None:   # an aborted run does not wait for a gone server
            drain = self.s.request_timeout * (self.s.updates + 4) + 1.0
            await asyncio.wait(tasks, timeout=drain)

    def _worker_done(self) -> None:
        self._active -= 1
        if self._active == 0:
            self.end_measure()

    # ------------------------------------------------------------------ closed loop

    async def _session_worker(self, client: Client) -> None:
        try:
            renewals = self.renewals
            every = self.renewal_every
            while True:
                n, measured = self._take()
                if n < 0:
                    return
                if renewals is not None and n % every == 0 and renewals.pool:
                    await renewals.session(client, n, measured, perf_counter_ns())
                else:
                    await self.run_session(client, n, measured, perf_counter_ns())
        finally:
            self._worker_done()

    async def _ping_worker(self, client: Client) -> None:
        record = self.stats["ping"].hist.record
        try:
            while True:
                n, measured = self._take()
                if n < 0:
                    return
                t0 = perf_counter_ns()
                sent_measuring = measured and self.measuring
                try:
                    await client.ping()
                except ChargingError as exc:
                    self.count_error("ping", exc, sent_measuring)
                    continue
                except asyncio.CancelledError:
                    self.count_cut_off("ping", sent_measuring)
                    raise
                t1 = self.last_reply = perf_counter_ns()
                if measured and self.measuring:
                    record(t1 - t0)
                    self.completed += 1
        finally:
            self._worker_done()

    # ------------------------------------------------------------------ open loop

    async def _pace(self) -> None:
        """Start sessions (or pings) at their intended times, at most `in_flight` at once
        (pacer.py: one timer per tick starts every session due in it)."""
        loop = asyncio.get_running_loop()
        assert self.s.rate is not None
        finished: asyncio.Future[None] = loop.create_future()
        pacer = self.pacer = Pacer(self.s.rate, self.s.in_flight, self._launch, loop)

        def paced() -> None:
            if not finished.done():
                finished.set_result(None)

        pacer.on_finished = paced
        running = self._running
        try:
            pacer.start()
            await finished
            while running:
                await asyncio.wait(list(running))
        finally:
            pacer.stop()
            for task in list(running):
                task.cancel()
            self._worker_done()

    def _launch(self, intended: int) -> bool:
        """Start the next session (or ping), timed from `intended`; False: none left."""
        n, measured = self._take()
        if n < 0:
            return False
        clients = self.clients
        client = clients[n % len(clients)]
        renewals = self.renewals
        job: Coroutine[Any, Any, None]
        if self.s.op == "ping":
            job = self._one_ping(client, measured, intended)
        elif renewals is not None and n % self.renewal_every == 0 and renewals.pool:
            job = renewals.session(client, n, measured, intended)
        else:
            job = self.run_session(client, n, measured, intended)
        pacer = self.pacer
        assert pacer is not None
        task = pacer.loop.create_task(job)
        self._running.add(task)
        task.add_done_callback(self._landed)
        return True

    def _landed(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        pacer = self.pacer
        if pacer is not None:
            pacer.done()

    async def _one_ping(self, client: Client, measured: bool, intended: int) -> None:
        sent_measuring = measured and self.measuring
        try:
            await client.ping()
        except ChargingError as exc:
            self.count_error("ping", exc, sent_measuring)
            return
        except asyncio.CancelledError:
            self.count_cut_off("ping", sent_measuring)
            raise
        t1 = self.last_reply = perf_counter_ns()
        if measured and self.measuring:
            self.stats["ping"].hist.record(t1 - intended)
            self.completed += 1

    # ------------------------------------------------------------------ sessions

    def count_failed(self, kind: str, result: SessionResult, measured: bool) -> list[str]:
        """Count the failed sub-requests; the reservation ids that succeeded."""
        if measured and self.measuring:
            errors = self.stats[kind].errors
            for r in result:
                if r.error is not None:
                    errors[r.error.code] += 1
        return [r.reservation_id for r in result if r.error is None]

    async def _session(self, client: Client, n: int, measured: bool, t0: int) -> None:
        """Start, U updates, stop; each container timed; `t0` is the start's send time."""
        user = self.users[n % len(self.users)]
        sid = f"{self.prefix}-s{n}"
        stats = self.stats
        rids = self.rids
        kind = "start"
        sent_measuring = measured and self.measuring   # a failure counts if sent measuring
        try:
            op = client.create_session_start_operation(user, self.s.service, sid)
            if self.result_type is not None:
                op.set_result_type(self.result_type)
            for rid in rids:
                op.prepare_reserve(rid, self.reserve_item, self.s.ttl)
            result = await op.execute()
            t1 = self.last_reply = perf_counter_ns()
            if measured and self.measuring:
                stats["start"].hist.record(t1 - t0)
            if not result.ok:
                rids = self.count_failed("start", result, measured)
                if not rids:
                    return
            kind = "update"
            confirm_item = self.confirm_item
            for _ in range(self.s.updates):
                up = client.create_session_update_operation(user, self.s.service, sid)
                for rid in rids:
                    up.prepare_confirm_and_reserve(rid, confirm_item, None, -1)
                t0 = perf_counter_ns()
                sent_measuring = measured and self.measuring
                result = await up.execute()
                t1 = self.last_reply = perf_counter_ns()
                if measured and self.measuring:
                    stats["update"].hist.record(t1 - t0)
                if not result.ok:
                    self.count_failed("update", result, measured)
            kind = "stop"
            stop = client.create_session_stop_operation(user, self.s.service, sid)
            final_item = self.final_item
            for rid in rids:
                stop.prepare_confirm(rid, final_item)
            t0 = perf_counter_ns()
            sent_measuring = measured and self.measuring
            result = await stop.execute()
            t1 = self.last_reply = perf_counter_ns()
            if measured and self.measuring:
                stats["stop"].hist.record(t1 - t0)
            if not result.ok:
                self.count_failed("stop", result, measured)
        except ChargingError as exc:
            self.count_error(kind, exc, sent_measuring)
        except asyncio.CancelledError:
            self.count_cut_off(kind, sent_measuring)
            raise
        finally:
            if measured and self.measuring:
                self.completed += 1

