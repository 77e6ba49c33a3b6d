"""The renewal story: a gateway's subscriber runs dry mid-session, an operator tops up,
the gateway is notified and reserves again.

    make run                                       # terminal 1
    .venv/bin/python examples/renewal_gateway.py [HOST:PORT]   # terminal 2
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from decimal import Decimal

import cc_client
from cc_client import ChargeableItem, RenewalNotification

LISTENER = 7


def data(volume: int) -> ChargeableItem:
    return ChargeableItem("data", {"volume": volume})


async def main(address: str) -> None:
    renewed = asyncio.Event()
    async with cc_client.connect(address, client_name="gateway") as gateway, \
            cc_client.connect(address, client_name="operator") as operator:

        async def on_renewal(note: RenewalNotification) -> None:
            print(f"gateway : notification {note.notification_id} attempt {note.attempt} "
                  f"({note.reason}) for {note.session_id}/{note.reservation_id}, "
                  f"context {note.external_data!r}")
            up = gateway.create_session_update_operation(
                user_id=note.user_id, service_id=note.service_id, session_id=note.session_id)
            up.prepare_confirm_and_reserve(note.reservation_id, data(0), None)   # nothing used
            r = (await up.execute())[note.reservation_id]
            print(f"gateway : reserved again -> ok={r.ok}, "
                  f"{r.reserve_result.amount if r.reserve_result else '-'} EUR held")
            renewed.set()          # returning normally acknowledges the notification

        await gateway.register_reservation_renewal_listener(LISTENER, on_renewal)
        user = f"bob-{uuid.uuid4().hex[:6]}"
        session = f"gy-{uuid.uuid4().hex[:8]}"
        await operator.admin.create_subscriber(user, Decimal("1.50"))
        print(f"operator: {user} created with 1.50 EUR")

        start = gateway.create_session_start_operation(user_id=user, service_id="DATA",
                                                       session_id=session)
        start.set_reservation_renewal_listener_id(LISTENER)
        start.set_external_data(b"diameter-session;host=gw1")
        start.prepare_reserve("rg-1", data(100), ttl=60)
        r = (await start.execute())["rg-1"]
        print(f"gateway : CCR-I reserve 100 MB -> {r.reserve_result.amount} EUR held"  # type: ignore[union-attr]
              )

        up = gateway.create_session_update_operation(user_id=user, service_id="DATA",
                                                     session_id=session)
        up.prepare_confirm_and_reserve("rg-1", data(100), data(100), ttl=-1)
        r = (await up.execute())["rg-1"]
        print(f"gateway : CCR-U used 100 MB, want 100 more -> {r.error.code if r.error else 'ok'}"
              f" (confirmed {r.confirm_result.amount if r.confirm_result else '-'} EUR)")

        await operator.admin.top_up(user, Decimal("5.00"))
        print("operator: topped up 5.00 EUR")
        await asyncio.wait_for(renewed.wait(), 10)

        stop = gateway.create_session_stop_operation(user_id=user, service_id="DATA",
                                                     session_id=session)
        stop.prepare_confirm("rg-1", data(40))
        await stop.execute()
        sub = await operator.admin.get_subscriber(user)
        print(f"gateway : CCR-T used 40 MB; final balance {sub.balance} EUR")


def parse_address(argv: list[str] | None = None) -> str:
    """The server's address from the command line (`--help` explains)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("address", nargs="?", default="127.0.0.1:9500", metavar="HOST:PORT",
                        help="the charging server (default: %(default)s)")
    address: str = parser.parse_args(argv).address
    return address


if __name__ == "__main__":
    try:
        asyncio.run(main(parse_address()))
    except (cc_client.ChargingError, ValueError) as exc:   # no server there, a bad address
        sys.exit(f"renewal_gateway.py: {exc}")
