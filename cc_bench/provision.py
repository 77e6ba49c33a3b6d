"""Before measuring: subscribers under a unique run prefix, and a pre-flight session."""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass, field
from decimal import Decimal

from cc_client import ChargeableItem, ChargingError, Client

from .settings import Settings

BATCH = 512                    # create_subscriber calls in flight at once
PROBE_BALANCE = Decimal("1000000000")
MAX_RENEWAL_USERS = 1000


class BenchError(Exception):
    """The run cannot go on (the message says why)."""


@dataclass(slots=True)
class Provisioned:
    """What the load needs: its subscribers and, for renewals, the starvable ones."""

    prefix: str
    users: list[str] = field(default_factory=list)
    renewal_users: list[str] = field(default_factory=list)
    reserve_amount: Decimal = Decimal(0)     # what one reservation of the item costs
    balance: Decimal = Decimal(0)            # of each subscriber: --balance + live reservations


def run_prefix() -> str:
    """A prefix no other run shares (ids of users and sessions start with it)."""
    return f"bench{os.getpid() % 100_000:05d}{secrets.token_hex(3)}"


async def create_subscribers(clients: list[Client], user_ids: list[str],
                             balance: Decimal) -> None:
    """Create every subscriber, `BATCH` at a time, spread over the connections."""
    for first in range(0, len(user_ids), BATCH):
        chunk = user_ids[first:first + BATCH]
        await asyncio.gather(*(clients[i % len(clients)].admin.create_subscriber(uid, balance)
                               for i, uid in enumerate(chunk, first)))


async def preflight(client: Client, s: Settings, prefix: str) -> Decimal:
    """One session on a rich probe subscriber: checks the service and item exist and
    returns what one reservation costs. Raises BenchError with the server's reason.
    First settles `s.quantity_property` (from the catalog when not given)."""
    s.quantity_property = await quantity_property(client, s)
    user = f"{prefix}-probe"
    await client.admin.create_subscriber(user, PROBE_BALANCE)
    start = client.create_session_start_operation(user, s.service, f"{prefix}-probe")
    item = ChargeableItem(s.item, {s.quantity_property: s.quantity})
    start.prepare_reserve("r0", item, s.ttl)
    try:
        result = (await start.execute())["r0"]
    except ChargingError as exc:
        raise BenchError(f"pre-flight session refused: {exc.code}: {exc.message}") from None
    if result.error is not None:
        raise BenchError(f"pre-flight reservation of {s.item!r} in {s.service!r} failed: "
                         f"{result.error.code}: {result.error.message}")
    stop = client.create_session_stop_operation(user, s.service, f"{prefix}-probe")
    stop.prepare_cancel("r0")
    await stop.execute()
    assert result.reserve_result is not None
    return result.reserve_result.amount


async def quantity_property(client: Client, s: Settings) -> str:
    """`--property`, or else the item's quantity property as the server's catalog names
    it (the operator command `catalog`). Raises BenchError with the reason."""
    if s.quantity_property:
        return s.quantity_property
    try:
        plans = await client.admin.catalog(s.service)
    except ChargingError as exc:
        raise BenchError(f"cannot read the server's catalog for {s.item!r} in {s.service!r} "
                         f"({exc.code}: {exc.message}); give its quantity property with "
                         "--property NAME") from None
    for plan in plans:
        if plan["item"] == s.item:
            return str(plan["quantity"])
    items = ", ".join(repr(p["item"]) for p in plans) or "none"
    raise BenchError(f"the server's catalog has no item {s.item!r} in service {s.service!r} "
                     f"(its items there: {items})")


async def provision(clients: list[Client], s: Settings, prefix: str | None = None
                    ) -> Provisioned:
    """Create the run's subscribers (none for `--op ping`) under `prefix` (default: a new
    run prefix), after the pre-flight session."""
    out = Provisioned(prefix or run_prefix())
    if s.op != "session":
        return out
    try:
        out.reserve_amount = await preflight(clients[0], s, out.prefix)
        out.users = [f"{out.prefix}-u{i}" for i in range(s.users)]
        # --live-sessions are spread round-robin over the users: on top of --balance, each
        # gets what its share of them holds, so they neither fail nor starve the load
        live_each = -(-s.live_sessions // s.users)
        out.balance = s.balance + live_each * out.reserve_amount
        await create_subscribers(clients, out.users, out.balance)
        if s.renewals:
            if out.reserve_amount <= 0:
                raise BenchError(f"--renewals needs an item that costs money; one "
                                 f"{s.item!r} of {s.quantity} costs nothing")
            count = min(s.in_flight, MAX_RENEWAL_USERS)
            out.renewal_users = [f"{out.prefix}-n{i}" for i in range(count)]
            # exactly one reservation's worth: the first update starves the session
            await create_subscribers(clients, out.renewal_users, out.reserve_amount)
    except ChargingError as exc:
        raise BenchError(f"provisioning subscribers failed: {exc.code}: {exc.message}") \
            from None
    return out
