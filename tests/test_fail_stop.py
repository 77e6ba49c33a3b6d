"""Fail-stop hygiene: the window in which an error stops the server covers exactly the change
of state and its log record; after a fail-stop nothing more is written (in process too);
timer steps fail on their own, counted and logged rate-limited, and lose no renewal."""

from __future__ import annotations

import asyncio
import decimal
import logging
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

import cc_client
from cc_client import ChargeableItem, RenewalNotification
from cc_server.metrics import prometheus
from cc_server.testing import ManualClock, ServerFailed, running_server
from protocol import buildinfo

PURE_ONLY = pytest.mark.skipif(buildinfo.build() == "compiled",
                               reason="patches the engine, which compiled classes forbid; "
                                      "the pure-Python build's run covers it")


def data(volume: int) -> ChargeableItem:
    return ChargeableItem("data", {"volume": volume})


def files(directory: Path) -> dict[str, bytes]:
    """Every snapshot and log segment of a data directory, with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())
            if p.name.startswith(("snapshot-", "wal-"))}


async def balance_after_restart(directory: Path, user: str) -> D:
    async with running_server(data_dir=str(directory)) as ts, \
            cc_client.connect(ts.url) as c:
        return (await c.admin.get_subscriber(user)).balance


async def test_an_error_writing_the_log_record_is_a_fail_stop_and_nothing_more_is_written(
        tmp_path: Path) -> None:
    """The top-up is applied in memory, then its log record fails: that is inside the
    window (it was answered SERVER_ERROR "nothing was applied" before). In process the
    server then writes nothing more: no final snapshot of the half-applied state, no log
    record, and its timers stop."""
    ticks = {"n": 0}
    with pytest.raises(ServerFailed, match="log on fire"):
        async with running_server(data_dir=str(tmp_path), tick=0.01) as ts, \
                cc_client.connect(ts.url, request_timeout=2) as c:
            await c.admin.create_subscriber("ann", D("0"))
            await c.admin.top_up("ann", "1")
            server = ts.server
            real_tick = server.renewal.tick

            def counted(now: float) -> Any:
                ticks["n"] += 1
                return real_tick(now)

            server.renewal.tick = counted  # type: ignore[method-assign]
            await ts.settle()
            assert ticks["n"] > 0
            dispatcher = server.dispatcher
            real_log = dispatcher.wal
            assert real_log is not None

            def broken(record: bytes) -> int:
                raise RuntimeError("log on fire")

            dispatcher.wal = broken
            before = files(tmp_path)
            with pytest.raises(cc_client.ChargingError):
                await c.admin.top_up("ann", "1")
            assert dispatcher.stopped
            dispatcher.wal = real_log
            seen = ticks["n"]
            await asyncio.sleep(0.1)
            assert ticks["n"] == seen, "the timers stopped"
    assert files(tmp_path) == before, "no snapshot, no log record after the fail-stop"
    assert await balance_after_restart(tmp_path, "ann") == D("1")


@PURE_ONLY
@pytest.mark.parametrize("error", [decimal.InvalidOperation, RuntimeError])
async def test_an_error_mid_container_is_a_fail_stop_and_no_snapshot_keeps_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type[Exception]) -> None:
    """An error after the first sub-request was applied: a DecimalException is no
    INVALID_REQUEST over a half-applied container; the in-process server stops without a
    final snapshot of the half-applied state, so the restart has none of it."""
    from cc_server.engine import sessions

    real = sessions.apply

    def apply(op: Any, sub: Any) -> Any:
        outcome = real(op, sub)
        if sub.reservation_id == "boom":         # applied, then the arithmetic fails
            raise error("injected")
        return outcome

    monkeypatch.setattr(sessions, "apply", apply)
    with pytest.raises(ServerFailed, match=error.__name__):
        async with running_server(data_dir=str(tmp_path)) as ts, \
                cc_client.connect(ts.url, request_timeout=2) as c:
            await c.admin.create_subscriber("bea", D("10"))
            start = c.create_session_start_operation(user_id="bea", service_id="DATA",
                                                     session_id="s1")
            start.prepare_reserve("r1", data(100), ttl=600)
            assert (await start.execute()).ok
            before = await c.admin.get_subscriber("bea")
            op = c.create_session_update_operation(user_id="bea", service_id="DATA",
                                                   session_id="s1")
            op.prepare_confirm("r1", data(100))          # a charge, then the failure
            op.prepare_reserve("boom", data(100), ttl=600)
            with pytest.raises(cc_client.ChargingError):
                await op.execute()
    monkeypatch.undo()
    async with running_server(data_dir=str(tmp_path)) as ts, \
            cc_client.connect(ts.url) as c:
        sub = await c.admin.get_subscriber("bea")
        assert (sub.balance, sub.reserved) == (before.balance, before.reserved)
        assert [s.session_id for s in await c.admin.find_sessions(user_id="bea")] == ["s1"]


async def test_a_failing_renewal_hand_over_is_no_fail_stop_and_loses_no_renewal(
        caplog: pytest.LogCaptureFixture) -> None:
    """`request_renewal` applied and logged, then handing the renewal over fails: the
    reply is ok, the server goes on, and the next timer run delivers the notification."""
    got: list[RenewalNotification] = []
    arrived = asyncio.Event()

    async def handler(note: RenewalNotification) -> None:
        got.append(note)
        arrived.set()

    async with running_server(tick=0.02) as ts, cc_client.connect(ts.url) as c:
        await c.admin.create_subscriber("cid", D("10"))
        await c.register_reservation_renewal_listener(9, handler)
        op = c.create_session_start_operation(user_id="cid", service_id="DATA",
                                              session_id="s1")
        op.set_reservation_renewal_listener_id(9)
        op.prepare_reserve("r1", data(10), ttl=600)
        assert (await op.execute()).ok
        renewal = ts.server.renewal
        real = renewal.submit
        failures = {"left": 3}

        def flaky(due: Any, now: float) -> None:
            if failures["left"]:
                failures["left"] -= 1
                raise RuntimeError("notify on fire")
            real(due, now)

        renewal.submit = flaky  # type: ignore[method-assign]
        await c.admin.request_renewal("s1", "r1")        # answered: no fail-stop
        assert not ts.server.dispatcher.stopped
        await asyncio.wait_for(arrived.wait(), 3)
        assert [n.reason for n in got] == ["operator"]
        stats = await c.admin.stats()
        assert stats["timers"]["notify_failures"] == 1
        assert stats["timers"]["failures"]["renewals"] >= 1
        assert "event=notify_failed" in caplog.text


async def test_a_notification_push_that_raises_is_counted_not_fatal() -> None:
    async with running_server(tick=0.02, renewal_resend_interval=0.05) as ts, \
            cc_client.connect(ts.url) as c:
        got = asyncio.Event()

        async def handler(note: RenewalNotification) -> None:
            got.set()

        await c.admin.create_subscriber("dan", D("10"))
        await c.register_reservation_renewal_listener(3, handler)
        conn = next(iter(ts.server.renewal.listeners[3]))
        real = conn.push
        calls = {"n": 0}

        def push(msg: Any) -> bool:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("socket write bug")
            return bool(real(msg))

        conn.push = push
        op = c.create_session_start_operation(user_id="dan", service_id="DATA",
                                              session_id="s1")
        op.set_reservation_renewal_listener_id(3)
        op.prepare_reserve("r1", data(10), ttl=600)
        assert (await op.execute()).ok
        await c.admin.request_renewal("s1", "r1")
        await asyncio.wait_for(got.wait(), 3)            # the resend got through
        assert not ts.server.dispatcher.stopped
        assert (await c.admin.stats())["renewal"]["push_failed"] == 1


async def test_timer_steps_run_on_their_own_counted_and_logged_rate_limited(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A resend step failing on every run starves neither the dedup expiry nor the
    snapshots, is counted per step in stats and /metrics, and logs a bounded number of
    lines (the first with its traceback)."""
    caplog.set_level(logging.WARNING, "cc_server")
    clock = ManualClock()
    async with running_server(data_dir=str(tmp_path), clock=clock, tick=60,
                              dedup_window=10) as ts, cc_client.connect(ts.url) as c:
        await c.admin.create_subscriber("eve", D("10"))
        op = c.create_session_start_operation(user_id="eve", service_id="DATA",
                                              session_id="s1")
        op.prepare_reserve("r1", data(10), ttl=5)
        assert (await op.execute()).ok               # its outcome is remembered
        server = ts.server
        assert len(server.dedup) >= 1

        def broken(now: float) -> None:
            raise RuntimeError("resend on fire")

        snapshots = {"n": 0}

        def maybe_snapshot(state: Any) -> None:
            snapshots["n"] += 1

        server.renewal.tick = broken  # type: ignore[method-assign]
        assert server.store is not None
        server.store.maybe_snapshot = maybe_snapshot  # type: ignore[method-assign,assignment]
        clock.advance(60)                               # past the exactly-once window
        for _ in range(100):
            server.run_timers()
        assert len(server.dedup) == 0, "the dedup expiry still ran"
        assert snapshots["n"] >= 100, "the snapshot step still ran"
        assert not server.dispatcher.stopped
        failures = server.dispatcher.stats()["timers"]["failures"]
        assert failures["resends"] >= 100 and failures["dedup"] == failures["expiry"] == 0
        text = prometheus(server.dispatcher.stats())
        assert f'cc_timers_failures_total{{step="resends"}} {failures["resends"]}' in text
        lines = [r for r in caplog.records if "event=timer_step_failed" in r.getMessage()]
        assert 2 <= len(lines) <= 21, len(lines)
        assert lines[0].exc_info is not None, "the first with its traceback"
