"""Pytest fixtures to copy into your own suite: a real charging server per test.

    pip install cc-charging pytest pytest-asyncio
    pytest -o asyncio_mode=auto examples/test_with_cc_server.py   # or set it in your config

The server runs in-process on 127.0.0.1 and a free port, in memory, with a clock your
test moves, so TTL expiry needs no sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

import cc_client
from cc_client import ChargeableItem, Resolution
from cc_server.testing import ManualClock, TestServer, running_server


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def charging_server(clock: ManualClock) -> AsyncIterator[TestServer]:
    async with running_server(clock=clock) as server:
        yield server


@pytest.fixture
async def charging(charging_server: TestServer) -> AsyncIterator[cc_client.Client]:
    async with cc_client.connect(charging_server.url) as client:
        yield client


async def test_a_gateway_session_is_charged(charging: cc_client.Client) -> None:
    await charging.admin.create_subscriber("alice", Decimal("10.00"))
    start = charging.create_session_start_operation(user_id="alice", service_id="DATA",
                                                    session_id="gy-1")
    start.prepare_reserve("rg-1", ChargeableItem("data", {"volume": 100}), ttl=30)
    assert (await start.execute()).ok
    stop = charging.create_session_stop_operation(user_id="alice", service_id="DATA",
                                                  session_id="gy-1")
    stop.prepare_confirm("rg-1", ChargeableItem("data", {"volume": 42}))
    await stop.execute()
    assert (await charging.admin.get_subscriber("alice")).balance == Decimal("9.58")


async def test_an_abandoned_reservation_expires_without_sleeping(
        charging: cc_client.Client, charging_server: TestServer, clock: ManualClock) -> None:
    await charging.admin.create_subscriber("bob", Decimal("10.00"))
    start = charging.create_session_start_operation(user_id="bob", service_id="DATA",
                                                    session_id="gy-2")
    start.prepare_reserve("rg-1", ChargeableItem("data", {"volume": 100}), ttl=30,
                          default_resolution=Resolution.CONFIRMED)
    await start.execute()
    clock.advance(31)                 # the gateway vanished: its reservation runs out
    await charging_server.settle()
    sub = await charging.admin.get_subscriber("bob")
    assert (sub.balance, sub.reserved) == (Decimal("9.00"), Decimal("0.00"))
