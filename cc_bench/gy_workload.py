"""`--protocol diameter`: the same load over Diameter Gy (gy.py's client).

A session is a CCR-I (one MSCC with an RSU per reservation: rating groups 10, 11, ...),
U CCR-U (USU + RSU each), and a CCR-T (USU each): the msgpack mix's start, updates and
stop, timed and reported under the same names. Errors are counted by Result-Code: the
top-level one when it is not 2001, else each MSCC's that is not. Subscribers and
top-ups go through the msgpack admin API (the clients the workers are handed); every
CCR goes over the Gy connections. `--renewals`: gy.py answers the RAR with RAA 2001;
the session then asks again with a CCR-U.
"""

from __future__ import annotations

import asyncio
from time import perf_counter_ns

from cc_client import ChargingError, Client
from cc_diameter import codes as c
from cc_diameter.cc import Cca

from .gy import RATING_GROUP, GyClient, GyError, ccr
from .renewals import Renewals
from .workload import COMMUNICATION_FAILURE, Workload

STARVED = c.DIAMETER_CREDIT_LIMIT_REACHED


class GySessions:
    """Sends a workload's sessions as CCRs over `gy` connections (plugged into the
    Workload, which is compiled and so cannot be subclassed here)."""

    def __init__(self, workload: Workload, gy: list[GyClient]) -> None:
        self.w = workload
        self.s = settings = workload.s
        self.gy = gy
        self.stats = workload.stats
        self.groups = [RATING_GROUP + k for k in range(settings.reservations)]
        q = settings.quantity
        self.used = max(1, q * 4 // 5)
        self.final = max(1, q // 5)
        workload.run_session = self.session
        old = workload.renewals
        if old is not None:
            renewals = GyRenewals(self, list(old.pool), old.amount)
            workload.renewals = renewals
            for conn in gy:
                conn.on_rar = renewals.on_rar

    def gy_failed(self, kind: str, exc: GyError, record: bool) -> None:
        """A CCR left unanswered; when nothing was answered for a request timeout, the
        server is taken as gone (as `count_error` does for msgpack)."""
        if record:
            self.stats[kind].errors[COMMUNICATION_FAILURE] += 1
        w = self.w
        silent = (perf_counter_ns() - max(w.last_reply, w.first_sent)) / 1e9
        if silent >= self.s.request_timeout:
            w.abort(f"no answer from the Diameter server for {silent:.1f} s: {exc}")

    def outcome(self, kind: str, cca: Cca, record: bool) -> list[int]:
        """Count the CCA's errors; the rating groups granted (all of them on success
        without MSCCs, as a CCR-T's answer may be)."""
        errors = self.stats[kind].errors
        if cca.result_code != c.DIAMETER_SUCCESS:
            if record:
                errors[str(cca.result_code)] += 1
            return []
        granted = []
        for mscc in cca.mscc:
            code = mscc.result_code
            if code is None or code == c.DIAMETER_SUCCESS:
                if mscc.rating_group is not None:
                    granted.append(mscc.rating_group)
            elif record:
                errors[str(code)] += 1
        return granted

    async def session(self, client: Client, n: int, measured: bool, t0: int) -> None:
        """CCR-I, U CCR-U, CCR-T; each timed; `t0` is the CCR-I's send time."""
        w = self.w
        gy = self.gy[n % len(self.gy)]
        user = w.users[n % len(w.users)]
        sid = f"{w.prefix};s{n}"
        s = self.s
        limit = s.request_timeout
        kind = "start"
        sent_measuring = measured and w.measuring
        try:
            cca = await gy.credit_control(
                ccr(sid, user, c.INITIAL_REQUEST, 0, self.groups, s.quantity, None), limit)
            t1 = w.last_reply = perf_counter_ns()
            if measured and w.measuring:
                self.stats["start"].hist.record(t1 - t0)
            groups = self.outcome("start", cca, measured and w.measuring)
            if not groups:
                return
            kind = "update"
            for number in range(1, s.updates + 1):
                t0 = perf_counter_ns()
                sent_measuring = measured and w.measuring
                cca = await gy.credit_control(ccr(sid, user, c.UPDATE_REQUEST, number, groups,
                                                  s.quantity, self.used), limit)
                t1 = w.last_reply = perf_counter_ns()
                if measured and w.measuring:
                    self.stats["update"].hist.record(t1 - t0)
                self.outcome("update", cca, measured and w.measuring)
            kind = "stop"
            t0 = perf_counter_ns()
            sent_measuring = measured and w.measuring
            cca = await gy.credit_control(ccr(sid, user, c.TERMINATION_REQUEST, s.updates + 1,
                                              groups, None, self.final), limit)
            t1 = w.last_reply = perf_counter_ns()
            if measured and w.measuring:
                self.stats["stop"].hist.record(t1 - t0)
            self.outcome("stop", cca, measured and w.measuring)
        except GyError as exc:
            self.gy_failed(kind, exc, sent_measuring)
        except asyncio.CancelledError:
            w.count_cut_off(kind, sent_measuring)
            raise
        finally:
            if measured and w.measuring:
                w.completed += 1


class GyRenewals(Renewals):
    """`--renewals` over Gy: a session reserves all its subscriber's credit, uses it and
    asks again (MSCC 4012: starved), the subscriber is topped up (admin API), the server's
    RAR arrives (timed as `notification` from the top-up), and the CCR-U that follows
    is served; then a CCR-T."""

    def __init__(self, sessions: GySessions, users: list[str], amount: str) -> None:
        super().__init__(sessions.w, users, amount)
        self.gw = sessions

    async def session(self, client: Client, n: int, measured: bool, t0: int) -> None:
        """One starved session over Gy (see the class)."""
        g = self.gw
        w = self.w
        s = w.s
        gy = g.gy[n % len(g.gy)]
        user = self.pool.popleft()
        sid = f"{w.prefix};n{n}"
        record = measured and w.measuring
        group = [RATING_GROUP]
        limit = s.request_timeout
        kind = "start"
        number = 0

        async def send(what: str, request_type: int, rsu: int | None,
                       usu: int | None) -> Cca:
            nonlocal number, t0
            cca = await gy.credit_control(ccr(sid, user, request_type, number, group, rsu,
                                              usu), limit)
            number += 1
            t1 = w.last_reply = perf_counter_ns()
            if record:
                w.stats[what].hist.record(t1 - t0)
            t0 = perf_counter_ns()
            return cca

        try:
            cca = await send("start", c.INITIAL_REQUEST, s.quantity, None)
            if not g.outcome("start", cca, record):
                return
            kind = "update"             # all of it used, as much again asked: starved
            cca = await send("update", c.UPDATE_REQUEST, s.quantity, s.quantity)
            codes = [m.result_code for m in cca.mscc]
            if cca.result_code == c.DIAMETER_SUCCESS and STARVED in codes:
                w.starved += 1
                await self._top_up_and_wait(client, user, sid, record)
                t0 = perf_counter_ns()  # the CCR-U that follows the RAR
                g.outcome("update", await send("update", c.UPDATE_REQUEST, s.quantity, None),
                          record)
            elif record:
                w.stats["notification"].errors["NOT_STARVED"] += 1
            kind = "stop"
            t0 = perf_counter_ns()
            g.outcome("stop", await send("stop", c.TERMINATION_REQUEST, None, 0), record)
        except ChargingError as exc:
            w.count_error(kind, exc, record)
        except GyError as exc:
            g.gy_failed(kind, exc, record)
        except asyncio.CancelledError:
            w.count_cut_off(kind, record)
            raise
        finally:
            self.pool.append(user)
            if measured and w.measuring:
                w.completed += 1

    def on_rar(self, session_id: str) -> None:
        """A RAR for `session_id` arrived (gy.py answered it): time it, wake the session."""
        entry = self._waiting.pop(session_id, None)
        if entry is None:
            return
        fut, t0, record = entry
        if record and self.w.measuring:
            self.w.stats["notification"].hist.record(perf_counter_ns() - t0)
        if not fut.done():
            fut.set_result(None)
