"""CPU per CCR through the server's Diameter Gy front-end, without sockets, beside
server_path.py's CPU per container in the same run.

Feeds pre-encoded frames (a CER, then per session CCR-I, two CCR-U with one MSCC of
USU + RSU, CCR-T with USU; the standard mix's four containers) to a DiameterConnection
whose transport is a stub, in reads of `--batch` frames, and prints microseconds per CCR;
then again with every CCR-I first and every CCR-T last, untimed, to time the CCR-Us alone;
then server_path's microseconds per container, and the ratios (the target of a CCR-U: at
most 1.5). Run: python benchmark/diameter_path.py [--sessions N] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import sys
import tempfile
import time
from decimal import Decimal
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import server_path

from cc_bench.gy import RATING_GROUP, ccr, cer
from cc_diameter import codes as c
from cc_diameter.codec import encode
from cc_server.config import ServerConfig
from cc_server.diameter_transport import DiameterConnection
from cc_server.server import ChargingServer

SORT = os.environ.get("SORT", "tottime")
CATALOG = """\
currency = "EUR"
[services.DATA.items.data]
quantity = "volume"
price = "0.01"
[diameter.rating_groups.10]
service = "DATA"
item = "data"
units = "total_octets"
"""


class StubTransport(server_path.StubTransport):
    """server_path's stub, plus what the Diameter connection asks of a transport."""

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None


def frames(sessions: int, users: int) -> list[list[bytes]]:
    """Per session its four CCRs (I, U, U, T), encoded."""
    out = []
    hop = 2
    groups = [RATING_GROUP]
    for n in range(sessions):
        user, sid = f"u{n % users}", f"gw;{n}"
        ccrs = []
        for number, (kind, rsu, usu) in enumerate(((c.INITIAL_REQUEST, 100, None),
                                                   (c.UPDATE_REQUEST, 100, 80),
                                                   (c.UPDATE_REQUEST, 100, 80),
                                                   (c.TERMINATION_REQUEST, None, 20))):
            ccrs.append(encode(ccr(sid, user, kind, number, groups, rsu, usu)
                               .to_message(hop, hop)))
            hop += 1
        out.append(ccrs)
    return out


def phases(sessions: list[list[bytes]], updates_only: bool) -> list[tuple[bool, list[bytes]]]:
    """(timed, frames) in the order they are fed: the sessions one after another, all
    timed; or (`updates_only`) every CCR-I, then every CCR-U (timed), then every CCR-T."""
    if not updates_only:
        return [(True, [f for one in sessions for f in one])]
    return [(False, [one[0] for one in sessions]),
            (True, [f for one in sessions for f in one[1:3]]),
            (False, [one[3] for one in sessions])]


async def run(sessions: int, users: int, batch: int, profile: bool, freeze_every: int,
              catalog: str, updates_only: bool = False) -> float:
    """Feed the CCRs; microseconds per timed CCR."""
    server = ChargingServer(ServerConfig(port=0, catalog=catalog, diameter="127.0.0.1:0"))
    for u in range(users):
        server.engine.create_subscriber(f"u{u}", Decimal("1000000"))
    assert server.diameter is not None
    conn = DiameterConnection(server.diameter)
    stub = StubTransport()
    conn.connection_made(stub)  # type: ignore[arg-type]
    conn.data_received(encode(cer()))
    assert conn.machine.open, "the CER was refused"
    plan = [(timed, [b"".join(data[i:i + batch]) for i in range(0, len(data), batch)],
             len(data)) for timed, data in phases(frames(sessions, users), updates_only)]
    profiler = cProfile.Profile() if profile else None

    def feed() -> float:
        spent = 0.0
        n = 0
        for timed, reads, _ in plan:
            started = time.process_time()
            if profiler and timed:
                profiler.enable()
            for chunk in reads:
                conn.data_received(chunk)
                n += 1
                if freeze_every and n % freeze_every == 0:
                    gc.freeze()
            if profiler:
                profiler.disable()
            if timed:
                spent += time.process_time() - started
        return spent

    spent = server.context.run(feed)
    counts = server.diameter.front.counts
    if counts.get("stop", 0) != sessions or counts.get("update", 0) != 2 * sessions:
        raise SystemExit(f"not every CCR was served as planned: {counts}")
    conn.connection_lost(None)
    timed_ccrs = sum(size for timed, _, size in plan if timed)
    per_ccr = spent / timed_ccrs * 1e6
    what = "CCR-U (CCR-Is fed before, CCR-Ts after, untimed)" if updates_only else \
        "CCR (I, U, U, T)"
    print(f"{per_ccr:.2f} us per {what} ({timed_ccrs} timed, {batch} per read)")
    if profiler:
        pstats.Stats(profiler).sort_stats(SORT).print_stats(40)
    return per_ccr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sessions", type=int, default=20_000)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--freeze-every", type=int, default=1000,
                   help="gc.freeze() every N reads, like cc-server (0: Python's default GC)")
    a = p.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(CATALOG)
    try:
        per_ccr = asyncio.run(run(a.sessions, a.users, a.batch, a.profile, a.freeze_every,
                                  f.name))
        per_update = asyncio.run(run(a.sessions, a.users, a.batch, False, a.freeze_every,
                                     f.name, updates_only=True))
    finally:
        os.unlink(f.name)
    print("server_path.py, same run: ", end="")
    per_container = server_path.measure(a.sessions, a.users, a.batch, a.freeze_every)
    print(f"ratio {per_ccr / per_container:.2f} (CCR / container, both the mean of the mix)")
    print(f"ratio {per_update / per_container:.2f} (CCR-U / container; target <= 1.5)")


if __name__ == "__main__":
    main()
