"""Provision a subscriber, run start / two updates / stop, print what each step rated.

    make run                                   # in one terminal (server on 127.0.0.1:9500)
    .venv/bin/python examples/charge_session.py [HOST:PORT]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from decimal import Decimal

import cc_client
from cc_client import ChargeableItem, RatingResult, Resolution


def show(label: str, rating: RatingResult | None) -> str:
    return f"{label}={rating.amount} {rating.currency}" if rating else f"{label}=-"


async def main(address: str) -> None:
    async with cc_client.connect(address) as client:
        user = f"alice-{uuid.uuid4().hex[:6]}"
        await client.admin.create_subscriber(user, Decimal("5.00"), counters={"free_data": 50})
        print(f"subscriber {user}: 5.00 EUR and 50 free MB")
        session = f"s-{uuid.uuid4().hex[:8]}"

        start = client.create_session_start_operation(user_id=user, service_id="DATA",
                                                      session_id=session)
        start.prepare_reserve("r-1", ChargeableItem("data", {"volume": 100}), ttl=60,
                              default_resolution=Resolution.CANCELED)
        r = (await start.execute())["r-1"]
        print(f"start : reserve 100 MB -> {show('reserve', r.reserve_result)}, "
              f"expires {r.expires_at:%H:%M:%S}")

        for used, wanted in ((80, 100), (100, 200)):
            up = client.create_session_update_operation(user_id=user, service_id="DATA",
                                                        session_id=session)
            up.prepare_confirm_and_reserve("r-1", ChargeableItem("data", {"volume": used}),
                                           ChargeableItem("data", {"volume": wanted}), ttl=-1)
            r = (await up.execute())["r-1"]
            note = f"  [{r.error.code}]" if r.error else ""
            print(f"update: used {used} MB, want {wanted} MB -> "
                  f"{show('(1) released', r.cancel_result)}, "
                  f"{show('(2) confirmed', r.confirm_result)}, "
                  f"{show('(3) reserved', r.reserve_result)}{note}")

        stop = client.create_session_stop_operation(user_id=user, service_id="DATA",
                                                    session_id=session)
        stop.prepare_confirm("r-1", ChargeableItem("data", {"volume": 70}))
        r = (await stop.execute())["r-1"]
        print(f"stop  : used 70 MB -> {show('released', r.cancel_result)}, "
              f"{show('confirmed', r.confirm_result)}")

        sub = await client.admin.get_subscriber(user)
        print(f"final : balance {sub.balance} {sub.currency}, reserved {sub.reserved}, "
              f"free_data left {sub.counters.get('free_data', 0)}")
        for tx in await client.admin.transactions(session_id=session):
            print(f"  tx {tx.transaction_id:>4} {tx.kind:<8} {tx.reason:<8} {tx.amount:>6} "
                  f"{dict(tx.counters) or ''}")


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
        sys.exit(f"charge_session.py: {exc}")
