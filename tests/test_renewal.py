"""Renewal notifications over real connections (SPEC section 4).

Resends run on the server's clock: these tests use a manual clock and move it to make the
next attempt due, so nothing here sleeps to wait for a resend. `settle()` (a few timer
ticks, 0.03 s) is only used to show that something did NOT happen once it was due.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal as D
from typing import Any

import pytest

import cc_client
import cc_client.sync
from cc_client import ChargeableItem, RenewalNotification
from cc_server.testing import ManualClock, ServerThread, TestServer, running_server
from tests.conftest import new_subscriber

ATTEMPTS = 4
FAST: dict[str, Any] = {"renewal_send_timeout": 0.1, "renewal_resend_interval": 0.2,
                        "renewal_resend_attempts": ATTEMPTS}
START = 1_800_000_000.0
NEXT = 0.25     # clock seconds that make the next resend due (the interval is 0.2)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def fast_server(clock: ManualClock) -> AsyncIterator[TestServer]:
    async with running_server(clock=clock, tick=0.01, **FAST) as srv:
        yield srv


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 3.0) -> None:
    """Poll `check` (a request to the server) until it holds."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.01)


def data(volume: int) -> ChargeableItem:
    return ChargeableItem("data", {"volume": volume})


async def starve(client: cc_client.Client, user: str, sid: str, listener: int = 7,
                 ttl: float = 30) -> None:
    """Start a session on `listener` and starve it: its confirm-and-reserve finds no credit."""
    op = client.create_session_start_operation(user_id=user, service_id="DATA", session_id=sid)
    op.set_reservation_renewal_listener_id(listener)
    op.set_external_data(b"gw-ctx")
    op.prepare_reserve("r1", data(50), ttl=ttl)
    assert (await op.execute()).ok
    up = client.create_session_update_operation(user_id=user, service_id="DATA", session_id=sid)
    up.prepare_confirm_and_reserve("r1", data(50), data(100))
    r = (await up.execute())["r1"]
    assert r.error is not None and r.error.code == "CREDIT_LIMIT_REACHED"


class Inbox:
    """A handler that records notifications; optionally fails or acks with confirm."""

    def __init__(self, fail: bool = False, confirm: bool = False) -> None:
        self.got: list[RenewalNotification] = []
        self.fail = fail
        self.confirm = confirm
        self.event = asyncio.Event()

    async def __call__(self, note: RenewalNotification) -> None:
        self.got.append(note)
        self.event.set()
        if self.fail:
            raise RuntimeError("not now")
        if self.confirm:
            await note.ack(confirm=True)

    async def wait(self, count: int = 1, timeout: float = 3.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.got) < count:
                self.event.clear()
                await self.event.wait()


async def renewal_stats(client: cc_client.Client) -> dict[str, int]:
    stats: dict[str, int] = (await client.admin.stats())["renewal"]
    return stats


async def counted(client: cc_client.Client, outcome: str, count: int) -> bool:
    """Whether the renewal service has counted `outcome` `count` times."""
    return (await renewal_stats(client)).get(outcome, 0) >= count


async def acknowledged(client: cc_client.Client, count: int) -> bool:
    return await counted(client, "acknowledged", count)


async def test_top_up_notifies_the_primary_which_acks_by_returning(
        fast_server: TestServer, clock: ManualClock) -> None:
    async with cc_client.connect(fast_server.url) as gw, \
            cc_client.connect(fast_server.url) as ops:
        inbox = Inbox()
        await gw.register_reservation_renewal_listener(7, inbox)
        user = await new_subscriber(ops, "u1", "0.60")
        await starve(gw, user, "s1")
        clock.advance(NEXT)
        await fast_server.settle()
        assert inbox.got == [], "starving a session must not notify it"
        await ops.admin.top_up(user, D("5"))
        await inbox.wait()
        note = inbox.got[0]
        assert (note.session_id, note.reservation_id, note.user_id, note.service_id) == (
            "s1", "r1", user, "DATA")
        assert (note.reason, note.attempt, note.external_data) == ("credit_available", 1,
                                                                   b"gw-ctx")
        await until(lambda: acknowledged(ops, 1))
        for _ in range(ATTEMPTS + 1):
            clock.advance(NEXT)
            await fast_server.settle()
        assert len(inbox.got) == 1, "an acknowledged notification is not resent"
        stats = await renewal_stats(ops)
        assert stats["acknowledged"] == 1 and stats.get("resent", 0) == 0


async def test_backup_gets_the_resend_when_the_primary_does_not_ack(
        fast_server: TestServer, clock: ManualClock) -> None:
    async with cc_client.connect(fast_server.url) as primary, \
            cc_client.connect(fast_server.url) as backup:
        failing, working = Inbox(fail=True), Inbox()
        await primary.register_reservation_renewal_listener(7, failing)
        await backup.register_reservation_renewal_listener(7, working)
        user = await new_subscriber(primary, "u2", "0.60")
        await starve(primary, user, "s2")
        await primary.admin.top_up(user, D("5"))
        await failing.wait()
        await fast_server.settle()
        assert working.got == [], "no resend before the clock says so"
        clock.advance(NEXT)
        await working.wait()
        assert [n.attempt for n in failing.got] == [1]
        assert working.got[0].attempt == 2
        assert working.got[0].notification_id == failing.got[0].notification_id


async def test_backup_takes_over_when_the_primary_dies(fast_server: TestServer) -> None:
    async with cc_client.connect(fast_server.url) as backup:
        working = Inbox()
        primary = await cc_client.connect(fast_server.url)
        await primary.register_reservation_renewal_listener(7, Inbox())
        await backup.register_reservation_renewal_listener(7, working)
        await primary.close()
        user = await new_subscriber(backup, "u3", "0.60")
        await starve(backup, user, "s3")
        await backup.admin.top_up(user, D("5"))
        await working.wait()
        assert working.got[0].attempt == 1


async def test_resends_are_bounded_by_attempts_and_keep_the_id(
        fast_server: TestServer, clock: ManualClock) -> None:
    async with cc_client.connect(fast_server.url) as gw:
        failing = Inbox(fail=True)
        await gw.register_reservation_renewal_listener(7, failing)
        user = await new_subscriber(gw, "u4", "0.60")
        await starve(gw, user, "s4")
        await gw.admin.top_up(user, D("5"))
        for attempt in range(1, 6):
            await failing.wait(attempt)
            clock.advance(NEXT)
        await until(lambda: counted(gw, "expired_unacknowledged", 1))
        clock.advance(10 * NEXT)
        await fast_server.settle()
        assert [n.attempt for n in failing.got] == [1, 2, 3, 4, 5]   # 1 + 4 resends
        assert len({n.notification_id for n in failing.got}) == 1
        assert (await renewal_stats(gw))["expired_unacknowledged"] == 1


async def test_no_resend_after_the_charging_session_expires(
        fast_server: TestServer, clock: ManualClock) -> None:
    async with cc_client.connect(fast_server.url) as gw:
        failing = Inbox(fail=True)
        await gw.register_reservation_renewal_listener(7, failing)
        user = await new_subscriber(gw, "u5", "0.60")
        await starve(gw, user, "s5", ttl=0.4)        # expires at start + 0.4
        await gw.admin.top_up(user, D("5"))
        await failing.wait(1)
        clock.advance(NEXT)                           # start + 0.25: resent
        await failing.wait(2)
        clock.advance(NEXT)                           # start + 0.5: expired, not resent
        await until(lambda: counted(gw, "obsolete", 1))
        clock.advance(10 * NEXT)
        await fast_server.settle()
        assert [n.attempt for n in failing.got] == [1, 2]
        assert all(abs(n.expires_at.timestamp() - (START + 0.4)) < 1e-3 for n in failing.got)


async def test_confirmed_ack_and_renewing_from_inside_the_handler(
        fast_server: TestServer) -> None:
    async with cc_client.connect(fast_server.url) as gw:
        renewed: list[cc_client.ReservationResult] = []

        async def handler(note: RenewalNotification) -> None:
            up = gw.create_session_update_operation(
                user_id=note.user_id, service_id=note.service_id, session_id=note.session_id)
            up.prepare_confirm_and_reserve(note.reservation_id, data(0), None)
            renewed.append((await up.execute())[note.reservation_id])
            await note.ack(confirm=True)

        await gw.register_reservation_renewal_listener(7, handler)
        user = await new_subscriber(gw, "u6", "0.60")
        await starve(gw, user, "s6")
        await gw.admin.top_up(user, D("5"))
        async with asyncio.timeout(3):
            while not renewed:
                await asyncio.sleep(0.02)
        assert renewed[0].ok and renewed[0].reserve_result.amount == D("1.00")  # type: ignore[union-attr]
        await until(lambda: acknowledged(gw, 1))
        sub = await gw.admin.get_subscriber(user)
        assert (sub.balance, sub.reserved) == (D("5.10"), D("1.00"))
        assert (await renewal_stats(gw))["acknowledged"] == 1


async def test_unregistered_listener_blocks_nothing_and_late_registration_gets_it(
        fast_server: TestServer, clock: ManualClock) -> None:
    async with cc_client.connect(fast_server.url) as gw:
        user = await new_subscriber(gw, "u7", "0.60")
        await starve(gw, user, "s7", listener=9)
        await gw.admin.top_up(user, D("5"))          # nobody listens on 9: nothing blocks
        op = gw.create_session_start_operation(user_id=user, service_id="DATA", session_id="x")
        op.prepare_reserve("r1", data(1), ttl=5)
        assert (await op.execute()).ok
        late = Inbox()
        await gw.register_reservation_renewal_listener(9, late)
        clock.advance(NEXT)
        await late.wait()
        assert late.got[0].attempt >= 2


async def test_reconnect_re_registers_listeners(fast_server: TestServer) -> None:
    async with cc_client.connect(fast_server.url) as gw:
        inbox = Inbox()
        await gw.register_reservation_renewal_listener(7, inbox)
        conn = gw._conn
        assert conn is not None
        conn.abort("test: drop the connection")
        async with asyncio.timeout(3):
            while gw._conn is conn or not gw.connected:
                await asyncio.sleep(0.02)
        user = await new_subscriber(gw, "u8", "0.60")
        await starve(gw, user, "s8")
        await gw.admin.top_up(user, D("5"))
        await inbox.wait()
        assert gw.reconnects == 1


async def test_operator_request_and_inverse_reduced_sessions(fast_server: TestServer) -> None:
    async with cc_client.connect(fast_server.url) as gw:
        inbox = Inbox()
        await gw.register_reservation_renewal_listener(7, inbox)
        user = await new_subscriber(gw, "u9", "0.30")
        op = gw.create_session_start_operation(user_id=user, service_id="DATA", session_id="s9")
        op.set_reservation_renewal_listener_id(7)
        op.prepare_reserve("r1", data(100), ttl=30, property_to_inverse="volume")
        r = (await op.execute())["r1"]
        assert r.granted_item is not None and r.granted_item.properties["volume"] == 30
        await gw.admin.top_up(user, D("1"))            # reduced by inverse rating: notify
        await inbox.wait()
        assert inbox.got[0].reason == "credit_available"
        await gw.admin.request_renewal("s9", "r1")
        await inbox.wait(2)
        assert inbox.got[1].reason == "operator"
        plain = gw.create_session_start_operation(user_id=user, service_id="DATA",
                                                  session_id="no-listener")
        plain.prepare_reserve("r1", data(1), ttl=30)
        await plain.execute()
        with pytest.raises(cc_client.InvalidRequest):
            await gw.admin.request_renewal("no-listener", "r1")
        with pytest.raises(cc_client.ReservationNotFound):
            await gw.admin.request_renewal("s9", "nope")
        with pytest.raises(cc_client.SessionNotFound):
            await gw.admin.request_renewal("nope", "r1")


def test_sync_facade_handler_may_execute_containers() -> None:
    with ServerThread(**FAST) as server, cc_client.sync.connect(server.url) as gw:
        gw.admin.create_subscriber("sync", D("0.60"))
        results: list[bool] = []

        def handler(note: RenewalNotification) -> None:     # runs on a worker thread
            up = gw.create_session_update_operation(
                user_id=note.user_id, service_id=note.service_id, session_id=note.session_id)
            up.prepare_confirm_and_reserve(note.reservation_id, data(0), None)
            results.append(up.execute()[note.reservation_id].ok)

        gw.register_reservation_renewal_listener(7, handler)
        start = gw.create_session_start_operation(user_id="sync", service_id="DATA",
                                                  session_id="ss")
        start.set_reservation_renewal_listener_id(7)
        start.prepare_reserve("r1", data(50), ttl=30)
        start.execute()
        up = gw.create_session_update_operation(user_id="sync", service_id="DATA",
                                                session_id="ss")
        up.prepare_confirm_and_reserve("r1", data(50), data(100))
        assert not up.execute().ok
        gw.admin.top_up("sync", D("5"))
        deadline = time.monotonic() + 3
        while not results and time.monotonic() < deadline:
            time.sleep(0.02)
        assert results == [True]
