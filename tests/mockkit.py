"""Helpers of the mock-power tests: a server with test controls and a few containers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import cc_client
from cc_client import ChargeableItem
from cc_server.testing import ManualClock, TestServer, running_server

T0 = 1_800_000_000.0


def data(volume: int) -> ChargeableItem:
    """A DATA item of `volume` MB (0.01 EUR a MB in the built-in catalog)."""
    return ChargeableItem("data", {"volume": volume})


@contextlib.asynccontextmanager
async def mock_server(**settings: Any) -> AsyncIterator[TestServer]:
    """An in-process server on a manual clock with the request record on."""
    settings.setdefault("record", 10_000)
    async with running_server(clock=ManualClock(T0), **settings) as server:
        yield server


async def start(client: cc_client.Client, user: str, session: str, volume: int = 100,
                ttl: int = 60, listener: int | None = None) -> cc_client.SessionResult:
    """Start a session reserving `volume` MB as rg-1."""
    op = client.create_session_start_operation(user_id=user, service_id="DATA",
                                               session_id=session)
    if listener is not None:
        op.set_reservation_renewal_listener_id(listener)
    op.prepare_reserve("rg-1", data(volume), ttl=ttl)
    return await op.execute()


def update(client: cc_client.Client, user: str, session: str,
           used: int = 20) -> Any:
    """An update that confirms `used` MB of rg-1 and reserves the same again."""
    op = client.create_session_update_operation(user_id=user, service_id="DATA",
                                                session_id=session)
    op.prepare_confirm_and_reserve("rg-1", data(used), data(100), ttl=-1)
    return op


async def balance(client: cc_client.Client, user: str) -> tuple[Decimal, Decimal]:
    """(balance, reserved) of a subscriber."""
    sub = await client.admin.get_subscriber(user)
    return sub.balance, sub.reserved
