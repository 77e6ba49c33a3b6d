"""The charging server: wires engine, dispatcher, renewal and connections to a loop.

`ChargingServer` is what `cc-server` runs and what `cc_server.testing` starts in-process.
Time comes from `clock` (epoch seconds), so tests can move it. Security (README
"Security"): users file and authentication in auth.py, TLS in tls.py, request limits in
limits.py; every refusal for a limit goes through `limit_hit` (counted in `stats()`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from protocol import buildinfo
from protocol.errors import ErrorCode

from . import snapshot as snap
from .auth import Authenticator, User, UsersFileError, exposure, load_users
from .catalogfile import load_catalog
from .clock import ManualClock, ScaledClock, wall_clock_ms
from .config import ServerConfig
from .connection import ALL_ROLES, ServerConnection
from .controls import TestControls
from .dedup import OutcomeCache
from .diameter_transport import DiameterListener
from .dispatch import Dispatcher
from .engine import Catalog, CatalogError, ChargingSession, Engine, engine_context
from .faults import rule_from_map
from .gcpolicy import GcPolicy
from .gy import GyFrontEnd
from .gy_config import GySettings, load_rating_groups
from .limits import ConnectionGate, Limits
from .metrics import MetricsEndpoint, prometheus
from .ratelog import RateLimitedLog
from .record import Record
from .renewal import RenewalService
from .store import Recovery, Store, catalogs_differ
from .tls import server_context
from .wal import WalWriter

log = logging.getLogger("cc_server")
VERSION = "0.1.0"
EXPIRY_BATCH = 5_000   # clean-ups per tick before yielding to the loop
#: the steps of a timer run, each run on its own (a failing one starves no other)
TIMER_STEPS = ("expiry", "renewals", "resends", "dedup", "snapshot", "gc")


def _read_users(path: str) -> dict[str, User]:
    """Load the users file (UsersFileError), warning when others may read it."""
    warning = exposure(path)
    if warning:
        log.warning("event=users_file_exposed message=%r", warning)
    return load_users(path)


class ChargingServer:
    """One listening charging server."""

    def __init__(self, config: ServerConfig | None = None, *,
                 clock: Callable[[], float] | None = None, engine: Engine | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.config = config or ServerConfig()
        problems = self.config.problems()
        if problems:
            raise ValueError("invalid server settings: " + "; ".join(problems))
        # Server time is kept to the millisecond, as SAP CC's: the containers of one
        # millisecond share their timestamp objects (a journal of millions keeps fewer).
        self.clock = clock = clock or self._config_clock()
        self.users: dict[str, User] | None = _read_users(self.config.users) \
            if self.config.users else None
        self.ssl_context = ssl_context or server_context(self.config)
        self.limits = Limits.from_config(self.config)
        self.version = f"cc-server {VERSION}"
        self.catalog = load_catalog(self.config.catalog) if self.config.catalog \
            else Catalog.builtin()
        self.store = Store(self.config.data_dir, self.config.snapshot_every,
                           self.config.recover_to_last_good) if self.config.data_dir else None
        self.engine = engine or Engine(self.catalog, self.config.journal_retain)
        self.renewal = RenewalService(self.config.renewal_send_timeout,
                                      self.config.renewal_resend_interval,
                                      self.config.renewal_resend_attempts,
                                      self.config.max_pending_notifications)
        self.dedup = OutcomeCache(self.config.dedup_window, self.config.dedup_max_entries)
        self.dispatcher = Dispatcher(self.engine, clock, self.renewal, self.dedup, self.limits)
        self.dispatcher.on_limit = self.limit_hit
        self.dispatcher.max_reply = self.config.max_frame   # what HELLO_OK announces
        self.dispatcher.on_dedup_full = self.dedup_full
        self.controls = self._test_controls()
        #: the request record (--record N); None when off: the hot path tests only that
        self.record: Record | None = self.controls.record
        #: --log-level debug: connections and requests are logged; read once, so the hot
        #: path pays one boolean test per request when it is off
        self.debug_log: bool = log.isEnabledFor(logging.DEBUG)
        self.dispatcher.stats_sections.update(
            server=self.server_stats, connections=self.connection_stats,
            security=self.security_stats, durability=self.durability_stats,
            timers=self.timer_stats,
            gc=lambda: self.gc_policy.stats() if self.gc_policy is not None else None)
        self.started = time.monotonic()
        self.metrics: MetricsEndpoint | None = None
        #: the Diameter Gy listener (--diameter), started beside the msgpack one
        self.diameter: DiameterListener | None = None
        if self.config.diameter is not None:
            settings = GySettings.from_table(self.config.diameter_table or {})
            front = GyFrontEnd(self.dispatcher, settings, load_rating_groups(self.config.catalog))
            self.diameter = DiameterListener(self, self.config.diameter, settings, front)
            self.dispatcher.stats_sections["diameter"] = self.diameter.stats
        #: set by the cc-server process (app.py), never by an in-process test server
        self.gc_policy: GcPolicy | None = None
        self.recovery: Recovery | None = None
        self.gate: ConnectionGate[ServerConnection] = ConnectionGate(
            self.config.max_connections, self.config.max_handshakes,
            self.config.max_connections_per_address)
        self.connections = self.gate.open     # from accept: TLS handshakes included
        self.waiting: set[ServerConnection] = set()   # holding replies for the log
        self.counts: Counter[str] = Counter()
        self.limit_hits: Counter[str] = Counter()
        #: failed timer-run steps, by step (TIMER_STEPS)
        self.timer_failures: Counter[str] = Counter()
        self.events = RateLimitedLog(log)
        self._server: asyncio.Server | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._closed = asyncio.Event()
        self._all_gone = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop = asyncio.get_running_loop()
        #: the context the server's callbacks run in: the caller's, with the engine's
        #: decimal context, so that no container swaps it in and out (~2 % of its CPU)
        self.context = engine_context()
        # a lambda, not the bound method: tests and embedders may replace `authenticate`
        self.auth = Authenticator(
            self.users, lambda user, password, conn: self.authenticate(  # noqa: PLW0108
                user, password, conn),
            self.loop, max_failures=self.config.auth_max_failures,
            window=self.config.auth_failure_window, backoff_max=self.config.auth_backoff_max)

    # ------------------------------------------------------------------ test controls

    def _config_clock(self) -> Callable[[], float]:
        if self.config.clock == "manual":
            return ManualClock()
        if self.config.clock_speed != 1.0:
            return ScaledClock(self.config.clock_speed)
        return wall_clock_ms

    def _test_controls(self) -> TestControls:
        """Fault rules (with the config file's `[[faults]]`), record and clock, wired to
        the dispatcher, the renewal service and the clock."""
        controls = TestControls(self.config.test_controls, self.config.record, self.clock)
        for rule in self.config.faults:
            controls.faults.add(rule_from_map(rule))
        dispatcher = self.dispatcher
        dispatcher.controls = controls
        dispatcher._admin.update(controls.commands())
        dispatcher.on_pause = self.pause_reading
        if controls.enabled:
            self.renewal.notify_faults = controls.plan_notify
            # a lambda: the loop is set at the end of __init__
            self.renewal.later = lambda delay, job: self.loop.call_later(  # noqa: PLW0108
                delay, job)
        manual = controls.manual_clock
        if manual is not None:
            manual.on_move = self._clock_moved
        return controls

    def _clock_moved(self, when: float) -> None:
        """The manual clock moved: log it and run the timers now (on the loop)."""
        try:
            on_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            on_loop = False
        if not on_loop:            # moved by a test's own thread
            self.loop.call_soon_threadsafe(self._clock_moved, when)
            return
        if self._closed.is_set() or self.dispatcher.stopped:
            return
        self.dispatcher.clock_moved(when)
        self.run_timers()

    def pause_reading(self, seconds: float) -> None:
        """A `pause` fault: stop reading every connection for `seconds`."""
        for conn in list(self.connections):
            conn.hold_reading(seconds)

    # ------------------------------------------------------------------ life cycle

    @property
    def wal(self) -> WalWriter | None:
        """The write-ahead log writer (None: in memory)."""
        return self.store.writer if self.store is not None else None

    async def start(self) -> None:
        """Recover (with --data-dir), then bind and start accepting connections. What it
        starts (connections, timers, the metrics endpoint) runs in `self.context`."""
        await self.loop.create_task(self._start(), context=self.context)

    async def _start(self) -> None:
        if self.store is not None:
            self.recovery = self._recover(self.store)
        for seed in self.catalog.subscribers:
            if seed.user_id not in self.engine.accounts:
                self.dispatcher.admin_local("create_subscriber", {
                    "user": seed.user_id, "balance": seed.balance, "currency": seed.currency,
                    "counters": dict(seed.counters),
                    **({"plan": seed.plan} if seed.plan is not None else {})})
        self.dispatcher.refill(self.clock())   # refills count from here (or catch up)
        # plain TCP even with TLS: each connection starts TLS itself (tls.TlsHandshake),
        # so it counts from accept and TLS shares the handshake deadline with HELLO
        self._server = await self.loop.create_server(
            lambda: ServerConnection(self), self.config.host, self.config.port,
            reuse_address=True, backlog=1024)
        if self.diameter is not None:
            await self.diameter.start()
        self._tick_handle = self.loop.call_later(self.config.tick, self._tick)
        if self.config.metrics_port is not None:
            self.metrics = MetricsEndpoint(self.config.metrics_host, self.config.metrics_port,
                                           lambda: prometheus(self.dispatcher.stats()))
            await self.metrics.start()

    def server_stats(self) -> dict[str, Any]:
        """The `server` section of stats()."""
        return {"uptime": round(time.monotonic() - self.started, 3), "version": self.version,
                "build": buildinfo.build()}

    def durability_stats(self) -> dict[str, Any] | None:
        """The `durability` section of stats() (None: in memory)."""
        wal = self.wal
        if self.store is None or wal is None:
            return None
        return {"log_records": wal.appended, "log_synced": wal.synced, "log_syncs": wal.syncs,
                "log_bytes": wal.bytes_written, "snapshot": self.store.snapshot_index}

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound (port 0 resolved)."""
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    def _recover(self, store: Store) -> Recovery:
        started = time.perf_counter()
        state, index = store.load()
        report = Recovery(snapshot=index)
        if state is None:
            store.write_initial(self.state())
        else:
            self.engine = snap.engine_from_state(
                state["engine"], snap.catalog_from_state(state["catalog"]),
                self.config.journal_retain)
            self.dispatcher.engine = self.engine
            snap.dedup_restore(self.dedup, state["dedup"])
            if "clock" in state:
                self.controls.restore_clock(state["clock"])
            self.renewal.restore(state["renewal"], self._charging_session)
            report.records = store.replay(index, self.dispatcher.replay)
            self.dedup.expire(self.clock())
        store.start(self._synced)
        self.dispatcher.wal = store.writer.append if store.writer else None
        if catalogs_differ(self.engine.catalog, self.catalog):
            self.engine.catalog = self.catalog
            report.catalog_changed = True
            store.snapshot_now(self.state)
        elif report.records:
            store.snapshot_in_background(self.state)
        report.seconds = time.perf_counter() - started
        log.info("event=recovered dir=%s snapshot=%d records=%d seconds=%.3f "
                 "catalog_changed=%s subscribers=%d sessions=%d", store.dir, report.snapshot,
                 report.records, report.seconds, report.catalog_changed,
                 len(self.engine.accounts), len(self.engine.sessions))
        return report

    def _charging_session(self, session_id: str, reservation_id: str) -> ChargingSession | None:
        session = self.engine.sessions.get(session_id)
        return session.charging_session(reservation_id) if session else None

    def state(self) -> dict[str, Any]:
        """Everything a snapshot holds."""
        state: dict[str, Any] = {"catalog": snap.catalog_to_state(self.engine.catalog),
                 "engine": snap.engine_to_state(self.engine),
                 "dedup": snap.dedup_to_state(self.dedup),
                 "renewal": self.renewal.to_state()}
        manual = self.controls.manual_clock
        if manual is not None:
            state["clock"] = manual.now     # recovery never puts a manual clock back
        return state

    def _synced(self, upto: int) -> None:
        for conn in list(self.waiting):
            conn.release(upto)

    def reload_users(self) -> bool:
        """Read the users file again (SIGHUP); on any problem keep the users in force.
        New handshakes use the new file; authenticated connections keep their roles."""
        if not self.config.users:
            log.warning("event=users_reload_skipped reason=no_users_file")
            return False
        try:
            users = _read_users(self.config.users)
        except UsersFileError as exc:
            log.error("event=users_reload_failed error=%r (the previous users stay)", str(exc))
            return False
        if not users:
            log.error("event=users_reload_failed error=%r (the previous users stay)",
                      f"users file {self.config.users} has no users: it would lock "
                      "everyone out")
            return False
        self.auth.replace_users(users)
        self.users = users
        log.info("event=users_reloaded users=%d", len(users))
        return True

    def reload_catalog(self) -> bool:
        """Read the --catalog file again (SIGHUP): its prices and plans apply from now
        (logged, so replay agrees); on any problem the catalog in force stays. Its
        [[subscribers]] are created at start only."""
        if not self.config.catalog:
            return False
        try:
            catalog = load_catalog(self.config.catalog)
        except CatalogError as exc:
            log.error("event=catalog_reload_failed error=%r (the catalog in force stays)",
                      str(exc))
            return False
        if not catalogs_differ(self.engine.catalog, catalog):
            log.info("event=catalog_unchanged file=%s", self.config.catalog)
            return False
        self.dispatcher.set_catalog(catalog)
        self.catalog = catalog
        log.info("event=catalog_reloaded file=%s plans=%d", self.config.catalog,
                 len(catalog.named))
        return True

    def hangup(self) -> None:
        """SIGHUP: read the users file and the catalog file again."""
        self.reload_users()
        self.reload_catalog()

    async def shutdown(self, drain: float = 5.0) -> None:
        """Stop accepting, say goodbye, let in-flight work finish, close everything."""
        if self._server is not None:
            self._server.close()
        if self.diameter is not None:
            await self.diameter.close()
        if self.metrics is not None:
            await self.metrics.close()
        if self.wal is not None:
            await self.wal.drain()    # held replies go out once their records are on disk
        self._all_gone.clear()       # set by any earlier moment with no connection
        for conn in list(self.connections):
            conn.goodbye("server shutting down")
            conn.close()             # the transport flushes what is buffered, then closes
        if self.connections:
            try:
                await asyncio.wait_for(self._all_gone.wait(), drain)
            except TimeoutError:     # a peer that does not read: drop it
                for conn in list(self.connections):
                    if conn.transport is not None:
                        conn.transport.abort()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        self.auth.close()
        if self._server is not None:
            await self._server.wait_closed()
        if self.store is not None:     # no final snapshot of a half-applied state
            await self.store.close(None if self.dispatcher.stopped else self.state)
        self._closed.set()

    def halt(self) -> None:
        """After a fail-stop in process (cc_server.testing; cc-server ends instead): write
        nothing more. The timers stop, log records not on disk yet are dropped (nothing
        waiting for them was acknowledged), and `shutdown` writes no final snapshot."""
        self.dispatcher.stopped = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        if self.wal is not None:
            self.wal.halt()

    async def wait_closed(self) -> None:
        """Return once `shutdown` has finished."""
        await self._closed.wait()

    # ------------------------------------------------------------------ hooks

    def authenticate(self, user: str | None, password: str | None,
                     conn: ServerConnection) -> frozenset[str] | None:
        """Roles of a connecting user without a users file, or None to refuse.

        The default trusts everyone with every role; override it to plug in your own
        (it runs on the event loop, so it must be quick). With a users file the server
        checks passwords itself (`auth.Authenticator`) and this hook is not called.
        """
        return ALL_ROLES

    def limit_hit(self, code: ErrorCode, peer: str, count: int = 1,
                  log_it: bool = True) -> None:
        """A request or connection refused for a limit: count it, log it (rate-limited)."""
        self.limit_hits[str(code)] += count
        if log_it:
            self.events.info("limit", "code=%s peer=%s count=%d", code, peer, count)

    def dedup_full(self, peer: str) -> None:
        """A new operation refused: the store of outcomes is at its bound (counted in the
        dispatcher's stats; logged rate-limited)."""
        self.limit_hit(ErrorCode.TOO_MANY_REQUESTS, peer, log_it=False)
        self.events.warning("dedup_full", "peer=%s entries=%d max_entries=%d window=%g "
                            "(new operations refused until outcomes age out)", peer,
                            len(self.dedup), self.dedup.max_entries, self.dedup.window)

    def connection_stats(self) -> dict[str, Any]:
        """The `connections` section of `stats()`."""
        return {"open": len(self.connections), "handshaking": len(self.gate.handshaking),
                "refused_per_address": self.gate.refused_per_address, **self.counts}

    def security_stats(self) -> dict[str, Any]:
        """The `security` section of `stats()`: authentication and limits."""
        limits = dict(self.limit_hits)
        dropped = self.renewal.counts.get("dropped_over_limit", 0)
        if dropped:
            limits[ErrorCode.TOO_MANY_NOTIFICATIONS.value] = \
                limits.get(ErrorCode.TOO_MANY_NOTIFICATIONS.value, 0) + dropped
        return {"auth": {"mode": "users file" if self.users is not None else "none",
                         "users": len(self.users or {}), **self.auth.stats()},
                "tls": self.ssl_context is not None, "limits": limits}

    def connection_closed(self, conn: ServerConnection) -> None:
        """A connection went away."""
        if not self.connections:
            self._all_gone.set()

    # ------------------------------------------------------------------ timers

    def _tick(self) -> None:
        self._tick_handle = None
        busy = self.run_timers()
        if not self.dispatcher.stopped:
            self._tick_handle = self.loop.call_later(0 if busy else self.config.tick,
                                                     self._tick)

    def run_timers(self) -> bool:
        """Expiry, renewals, renewal resends, dedup expiry, snapshots, as due now; True
        when more expiry work is left than one batch. Each step runs on its own: one that
        fails is counted (`timer_stats`) and logged (rate-limited) and the others run."""
        dispatcher = self.dispatcher
        if dispatcher.stopped:
            return False
        now = self.clock()
        busy = False
        try:
            # expiries and refills: timer decisions, logged; a failure half-way is fatal
            busy = dispatcher.expire(now, EXPIRY_BATCH) >= EXPIRY_BATCH
            dispatcher.refill(now)
        except Exception:
            if dispatcher.applying:       # an expiry half applied: fail-stop
                dispatcher.applying = False
                dispatcher.fatal(None, None)
                return False
            self._timer_failed("expiry")
        store, gc_policy = self.store, self.gc_policy
        steps: list[tuple[str, Callable[[], object]]] = [
            ("renewals", lambda: dispatcher.flush_renewals(now)),   # requeued on failure
            ("resends", lambda: self.renewal.tick(now)),
            ("dedup", lambda: self.dedup.expire(now))]
        if store is not None:
            steps.append(("snapshot", lambda: store.maybe_snapshot(self.state)))
        if gc_policy is not None:
            steps.append(("gc", gc_policy.tick))
        for name, step in steps:
            try:
                step()
            except Exception:
                self._timer_failed(name)
        return busy

    def _timer_failed(self, step: str) -> None:
        """Count a failed timer step; its first failure is logged with the traceback,
        later ones rate-limited (a step failing every tick floods no log)."""
        self.timer_failures[step] += 1
        if self.timer_failures[step] == 1:
            log.exception("event=timer_step_failed step=%s count=1", step)
        else:
            self.events.warning("timer_step_failed", "step=%s count=%d error=%r", step,
                                self.timer_failures[step], sys.exc_info()[1])

    def timer_stats(self) -> dict[str, Any]:
        """The `timers` section of stats(): failed steps of timer runs, by step, and the
        errors handing renewals over after a change was applied."""
        return {"failures": {step: self.timer_failures[step] for step in TIMER_STEPS},
                "notify_failures": self.dispatcher.notify_failures}

