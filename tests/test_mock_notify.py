"""Notification fault rules and matches on LISTEN, ACK and the connection's user."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest

import cc_client
from cc_client import RenewalNotification
from cc_server.testing import TestServer
from tests.mockkit import mock_server, start

LISTENER = 7


async def _listening(server: TestServer, client: cc_client.Client,
                     seen: list[RenewalNotification], user: str) -> None:
    async def on_renewal(note: RenewalNotification) -> None:
        seen.append(note)

    await client.register_reservation_renewal_listener(LISTENER, on_renewal)
    await client.admin.create_subscriber(user, D("10.00"))
    await start(client, user, "s-1", ttl=600, listener=LISTENER)


async def _until(condition: object, timeout: float = 0.2) -> None:
    async def wait() -> None:
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.005)
    await asyncio.wait_for(wait(), timeout)


async def test_drop_notify_the_handler_gets_the_resend() -> None:
    async with mock_server() as server, cc_client.connect(server.url) as client:
        seen: list[RenewalNotification] = []
        await _listening(server, client, seen, "ann")
        rule = server.faults.add(action="drop-notify", times=1)
        await client.admin.request_renewal("s-1", "rg-1")
        await asyncio.sleep(0.05)
        assert seen == [] and rule.fired == 1             # attempt 1 never went out
        server.advance(1.0)                                # the resend interval
        await _until(lambda: len(seen) == 1)
        assert seen[0].attempt == 2
        server.record.verify(1, type="NOTIFY", direction="out")
        await _until(lambda: bool(server.record.find(type="ACK")))


async def test_duplicate_notify_sends_it_twice() -> None:
    async with mock_server() as server, cc_client.connect(server.url) as client:
        seen: list[RenewalNotification] = []
        await _listening(server, client, seen, "ben")
        server.faults.add(action="duplicate-notify", times=1)
        await client.admin.request_renewal("s-1", "rg-1")
        await _until(lambda: len(server.record.find(type="NOTIFY", direction="out")) == 2)
        notes = server.record.find(type="NOTIFY", direction="out")
        assert notes[0].body == notes[1].body


async def test_delay_notify_sends_it_late() -> None:
    async with mock_server() as server, cc_client.connect(server.url) as client:
        seen: list[RenewalNotification] = []
        await _listening(server, client, seen, "cid")
        server.faults.add(action="delay-notify", seconds=0.1, times=1)
        await client.admin.request_renewal("s-1", "rg-1")
        await asyncio.sleep(0.05)
        assert seen == []
        await _until(lambda: len(seen) == 1)
        assert seen[0].attempt == 1


async def test_listen_and_ack_requests_can_be_faulted() -> None:
    async with mock_server() as server, \
            cc_client.connect(server.url, request_timeout=0.3) as client:
        rule = server.faults.add(action="error", code="FORBIDDEN", type="LISTEN",
                                 listener=LISTENER)
        with pytest.raises(cc_client.Forbidden):
            await client.register_reservation_renewal_listener(LISTENER, lambda note: None)
        assert rule.fired == 1
        rule.remove()
        seen: list[RenewalNotification] = []
        server.faults.add(action="drop-request", type="ACK", times=1)
        await _listening(server, client, seen, "dee")
        await client.admin.request_renewal("s-1", "rg-1")
        await _until(lambda: len(seen) == 1)
        server.advance(1.0)                                # the ack was lost: resent
        await _until(lambda: len(seen) == 2)
        assert [note.attempt for note in seen] == [1, 2]


async def test_a_rule_matches_the_connections_authenticated_user() -> None:
    async with mock_server() as server, \
            cc_client.connect(server.url, user="gw-1", password="x") as gw1, \
            cc_client.connect(server.url, user="op", password="x") as op:
        await op.admin.create_subscriber("eve", D("10.00"))
        server.faults.add(action="error", code="FORBIDDEN", conn_user="gw-*", type="ADMIN")
        with pytest.raises(cc_client.Forbidden):
            await gw1.admin.get_subscriber("eve")
        assert (await op.admin.get_subscriber("eve")).balance == D("10.00")
        assert {e.conn_user for e in server.record.find(type="ADMIN")} == {"gw-1", "op"}
