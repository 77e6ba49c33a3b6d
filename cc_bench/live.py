"""`--live-sessions N`: sessions held open, one reservation each, while the load is measured.

They are opened before the warm-up, pipelined over every connection with at most
`PER_CONNECTION` in flight on each, spread round-robin over the run's subscribers, with ids
`<prefix>-live<i>` and reservations of `--live-ttl` seconds; they are never measured. With
`--server` they are stopped afterwards (a stop container cancelling the reservation) so a
shared server is left clean; a spawned server is simply stopped with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from time import perf_counter
from typing import TextIO

from cc_client import ChargeableItem, ChargingError, Client, CommunicationFailure, ResultType

from .provision import BenchError
from .settings import Settings

RID = "r0"
PER_CONNECTION = 512            # live starts (or stops) in flight on each connection
GONE = ("SESSION_NOT_FOUND", "RESERVATION_NOT_FOUND")   # expired already: nothing to close
OPEN, UNKNOWN = 1, 2            # per session: opened, or no answer (maybe opened)

Job = Callable[[Client, int], Awaitable[None]]


class LiveSessions:
    """Opens N sessions (`open`), and stops those it opened (`close`)."""

    def __init__(self, s: Settings, clients: list[Client], users: list[str], prefix: str,
                 stream: TextIO | None = None) -> None:
        self.s = s
        self.clients = clients
        self.users = users
        self.prefix = prefix
        self.count = s.live_sessions
        self.state = bytearray(self.count)      # 0, OPEN or UNKNOWN per session
        self.item = ChargeableItem(s.item, {s.quantity_property or "unused": s.quantity})
        self.opened = 0
        self.closed = 0
        self.open_s = 0.0
        self.close_s = 0.0
        self.errors: Counter[str] = Counter()   # refused starts, or failed stops, by code
        self.first_error = ""
        self.stream = stream if stream is not None else sys.stderr
        self.live = not s.quiet and self.stream.isatty()
        self._done = 0
        self._halt = False
        self._opening = False
        self._unanswered = 0

    # ------------------------------------------------------------------ phases

    async def open(self) -> None:
        """Open all N; BenchError if any start is refused or the time limit passes."""
        if not self.count:
            return
        t0 = perf_counter()
        try:
            await self._run(iter(range(self.count)), self._open_one, "opened", self.count)
        except TimeoutError:
            raise BenchError(f"--live-sessions: only {self.opened:,} of {self.count:,} "
                             f"opened within {self.s.live_budget:g} s") from None
        finally:
            self.open_s = perf_counter() - t0
        if self.errors:
            refused = sum(self.errors.values())
            hint = "; the subscribers' balance does not cover them" \
                if "CREDIT_LIMIT_REACHED" in self.errors else ""
            raise BenchError(f"--live-sessions: {refused:,} start(s) refused, first: "
                             f"{self.first_error} ({self.opened:,} of {self.count:,} opened"
                             f"{hint})")

    async def close(self) -> None:
        """Stop every session opened (or maybe opened); failures are counted, not raised."""
        total = sum(1 for v in self.state if v)
        if not total:
            return
        self.errors.clear()
        self.first_error = ""
        self._halt = False
        self._unanswered = 0
        t0 = perf_counter()
        todo = (i for i, v in enumerate(self.state) if v)
        try:
            await self._run(todo, self._close_one, "closed", total)
        except TimeoutError:
            self.errors["TIMEOUT"] += total - self._done
        finally:
            self.close_s = perf_counter() - t0
        left = sum(1 for v in self.state if v == OPEN)
        if left:
            print(f"cc-bench: {left:,} live sessions could not be closed "
                  f"({self.first_error or 'time limit'})", file=sys.stderr, flush=True)

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-ready figures."""
        return {"requested": self.count, "opened": self.opened,
                "open_s": round(self.open_s, 3),
                "open_per_s": round(self.opened / self.open_s, 1) if self.open_s else None,
                "closed": self.closed, "close_s": round(self.close_s, 3)}

    # ------------------------------------------------------------------ one session

    def _user(self, i: int) -> str:
        return self.users[i % len(self.users)]

    async def _open_one(self, client: Client, i: int) -> None:
        op = client.create_session_start_operation(self._user(i), self.s.service,
                                                   f"{self.prefix}-live{i}")
        op.set_result_type(ResultType.NO_TRANSACTIONS)
        op.prepare_reserve(RID, self.item, self.s.live_ttl)
        try:
            result = (await op.execute())[RID]
        except ChargingError as exc:
            if isinstance(exc, CommunicationFailure):
                self.state[i] = UNKNOWN          # it may have been applied: close it too
            self._fail(exc.code, exc.message, isinstance(exc, CommunicationFailure))
            return
        if result.error is not None:
            self._fail(result.error.code, result.error.message, False)
            return
        self.state[i] = OPEN
        self.opened += 1
        self._unanswered = 0

    async def _close_one(self, client: Client, i: int) -> None:
        op = client.create_session_stop_operation(self._user(i), self.s.service,
                                                  f"{self.prefix}-live{i}")
        op.set_result_type(ResultType.NO_TRANSACTIONS)
        op.prepare_cancel(RID)
        try:
            result = (await op.execute())[RID]
        except ChargingError as exc:
            if exc.code not in GONE:
                self._fail(exc.code, exc.message, isinstance(exc, CommunicationFailure))
                return
        else:
            if result.error is not None and result.error.code not in GONE:
                self._fail(result.error.code, result.error.message, False)
                return
        if self.state[i] == OPEN:
            self.closed += 1
        self.state[i] = 0
        self._unanswered = 0

    def _fail(self, code: str, message: str, unanswered: bool) -> None:
        """Count a failure. Opening stops at the first (the run cannot go on); closing goes
        on, unless so many in a row went unanswered that the server must be gone."""
        self.errors[code] += 1
        if not self.first_error:
            self.first_error = f"{code}: {message}"
        self._unanswered = self._unanswered + 1 if unanswered else 0
        if self._opening or self._unanswered >= len(self.clients) * PER_CONNECTION:
            self._halt = True

    # ------------------------------------------------------------------ the pool

    async def _run(self, todo: Iterator[int], job: Job, what: str, total: int) -> None:
        """`job` for every index of `todo`, PER_CONNECTION at a time on each connection,
        within `Settings.live_budget`; a progress line every `--interval`."""
        self._done = 0
        self._opening = what == "opened"
        t0 = perf_counter()

        async def worker(client: Client) -> None:
            for i in todo:                       # one iterator shared by all the workers
                await job(client, i)
                self._done += 1
                if self._halt:
                    return

        loop = asyncio.get_running_loop()
        ticker = loop.create_task(self._progress(what, total))
        try:
            async with asyncio.timeout(self.s.live_budget), asyncio.TaskGroup() as group:
                for client in self.clients:
                    for _ in range(PER_CONNECTION):
                        group.create_task(worker(client))
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            self._show(what, total, f"in {perf_counter() - t0:.1f} s", final=True)

    async def _progress(self, what: str, total: int) -> None:
        loop = asyncio.get_running_loop()
        interval = self.s.interval
        t0 = loop.time()
        next_at = t0 + interval
        before = 0
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += interval
            done = self._done
            self._show(what, total, f"{(done - before) / interval:,.0f}/s")
            before = done

    def _show(self, what: str, total: int, pace: str, final: bool = False) -> None:
        if self.s.quiet:
            return
        text = f"live sessions {what} {self._done:,}/{total:,}  {pace}"
        if self.errors:
            text += f"  errors {sum(self.errors.values()):,}"
        if self.live:
            self.stream.write("\r" + text + "\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write("[cc-bench] " + text + "\n")
        self.stream.flush()
