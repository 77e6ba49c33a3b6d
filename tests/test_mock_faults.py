"""Fault rules through the real client: each action, and what the client then does."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal as D

import pytest

import cc_client
from tests.mockkit import balance, mock_server, start, update


async def test_drop_reply_the_retry_gets_the_stored_outcome_and_charges_once() -> None:
    async with mock_server() as server, \
            cc_client.connect(server.url, request_timeout=0.3) as client:
        await client.admin.create_subscriber("alice", D("10.00"))
        await start(client, "alice", "s-1")
        rule = server.faults.add(action="drop-reply", kind="update", user="ali*",
                                 session="s-?", service="DATA", times=1)
        op = update(client, "alice", "s-1", used=20)
        with pytest.raises(cc_client.CommunicationFailure):
            await op.execute()                  # applied and logged, never answered
        result = await op.execute()             # the same operation id: the stored reply
        assert result["rg-1"].ok and rule.fired == 1
        assert await balance(client, "alice") == (D("9.80"), D("1.00"))
        server.record.verify(2, kind="update", session="s-1",
                             last=lambda e: e.subrequests[0]["item"][1]["volume"] == 20)


async def test_drop_request_nothing_is_applied_until_the_retry() -> None:
    async with mock_server() as server, \
            cc_client.connect(server.url, request_timeout=0.3) as client:
        await client.admin.create_subscriber("bob", D("10.00"))
        await start(client, "bob", "s-1")
        with server.faults.add(action="drop-request", kind="update", times=1):
            op = update(client, "bob", "s-1")
            with pytest.raises(cc_client.CommunicationFailure):
                await op.execute()
            assert await balance(client, "bob") == (D("10.00"), D("1.00"))
            assert (await op.execute()).ok
        assert await balance(client, "bob") == (D("9.80"), D("1.00"))
        assert not list(server.faults)          # leaving the block removed the rule


@pytest.mark.parametrize("action", ["close-before", "close-after"])
async def test_a_closed_connection_is_resent_and_charged_once(action: str) -> None:
    async with mock_server() as server, cc_client.connect(server.url) as client:
        await client.admin.create_subscriber("carol", D("10.00"))
        await start(client, "carol", "s-1")
        rule = server.faults.add(action=action, kind="update", times=1)
        result = await update(client, "carol", "s-1").execute()   # reconnects, re-sends
        assert result.ok and rule.fired == 1
        assert await balance(client, "carol") == (D("9.80"), D("1.00"))
        updates = server.record.verify(2, kind="update")
        assert updates[0].conn != updates[1].conn                  # on a new connection


async def test_error_container_is_raised_unapplied_and_not_remembered() -> None:
    async with mock_server() as server, cc_client.connect(server.url) as client:
        await client.admin.create_subscriber("dave", D("10.00"))
        await start(client, "dave", "s-1")
        server.faults.add(action="error", code="CREDIT_LIMIT_REACHED", kind="update",
                          times=1)
        op = update(client, "dave", "s-1")
        with pytest.raises(cc_client.CreditLimitReached):
            await op.execute()
        assert await balance(client, "dave") == (D("10.00"), D("1.00"))
        assert (await op.execute()).ok          # not stored: the retry is applied
        assert await balance(client, "dave") == (D("9.80"), D("1.00"))


async def test_error_subrequest_fails_only_the_matching_one() -> None:
    async with mock_server() as server, cc_client.connect(server.url) as client:
        await client.admin.create_subscriber("erin", D("10.00"))
        server.faults.add(action="error", code="CREDIT_LIMIT_REACHED", scope="subrequest",
                          sub_action="reserve", user="erin")
        op = client.create_session_start_operation(user_id="erin", service_id="DATA",
                                                   session_id="s-1")
        op.prepare_reserve("rg-1", cc_client.ChargeableItem("data", {"volume": 100}), ttl=60)
        result = await op.execute()
        assert result["rg-1"].error is not None
        assert result["rg-1"].error.code == "CREDIT_LIMIT_REACHED"
        assert await balance(client, "erin") == (D("10.00"), D("0.00"))
        stats = await client.admin.stats()     # counted like any refused sub-request
        assert stats["sub_requests"] == {"reserve.CREDIT_LIMIT_REACHED": 1}


async def test_busy_the_client_backs_off_and_sends_again() -> None:
    async with mock_server() as server, cc_client.connect(server.url) as client:
        await client.admin.create_subscriber("fay", D("10.00"))
        rule = server.faults.add(action="busy", kind="start", times=2)
        assert (await start(client, "fay", "s-1")).ok
        assert rule.fired == 2
        server.record.verify(3, kind="start")   # two refused, the third applied
        refused = server.record.find(type="ERROR", direction="out")
        assert [e.body["code"] for e in refused] == ["TOO_MANY_REQUESTS"] * 2


async def test_delay_holds_one_reply_and_no_other_connection() -> None:
    async with mock_server() as server, cc_client.connect(server.url) as slow, \
            cc_client.connect(server.url) as other:
        await slow.admin.create_subscriber("gil", D("10.00"))
        await start(slow, "gil", "s-1")
        server.faults.add(action="delay", seconds=0.15, kind="update", times=1)
        began = time.monotonic()
        late = asyncio.ensure_future(update(slow, "gil", "s-1").execute())
        await other.admin.get_subscriber("gil")           # answered at once
        assert time.monotonic() - began < 0.1 and not late.done()
        assert (await late).ok
        assert time.monotonic() - began >= 0.15


async def test_pause_stops_reading_every_connection() -> None:
    async with mock_server() as server, cc_client.connect(server.url) as one, \
            cc_client.connect(server.url) as two:
        await one.admin.create_subscriber("hal", D("10.00"))
        server.faults.add(action="pause", seconds=0.15, type="ADMIN", times=1)
        began = time.monotonic()
        await one.admin.get_subscriber("hal")             # answered, then reading stops
        await two.admin.get_subscriber("hal")             # waits for the pause to end
        assert time.monotonic() - began >= 0.14


async def test_schedules_after_every_times_and_a_seeded_probability() -> None:
    async with mock_server() as server, cc_client.connect(server.url) as client:
        await client.admin.create_subscriber("ivy", D("10.00"))
        every = server.faults.add(action="error", code="INVALID_REQUEST", type="ADMIN",
                                  after=1, every=2, times=2, user="ivy")
        outcomes = []
        for _ in range(7):
            try:
                await client.admin.get_subscriber("ivy")
                outcomes.append("ok")
            except cc_client.InvalidRequest:
                outcomes.append("error")
        # match 1 is skipped (after=1), then every 2nd fires, at most twice
        assert outcomes == ["ok", "ok", "error", "ok", "error", "ok", "ok"]
        assert (every.matched, every.fired) == (7, 2)
        every.remove()
        chance = server.faults.add(action="error", code="INVALID_REQUEST", type="ADMIN",
                                   probability=0.5, seed=7, user="ivy")
        fired = 0
        for _ in range(20):
            try:
                await client.admin.get_subscriber("ivy")
            except cc_client.InvalidRequest:
                fired += 1
        assert fired == chance.fired and 0 < fired < 20
