"""CPU per CCR through the server's Diameter Gy front-end, without sockets, beside
server_path.py's CPU per container in the same run.

Feeds pre-encoded frames (a CER, then per session CCR-I, two CCR-U with one MSCC of
USU + RSU, CCR-T with USU; the standard mix's four containers) to a DiameterConnection
whose transport is a stub, in reads of `--batch` frames, and prints microseconds per CCR,
then server_path's microseconds per container, and their ratio (the target of a CCR-U:
at most 1.5). Run: python benchmark/diameter_path.py [--sessions N] [--profile]
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


def frames(sessions: int, users: int) -> list[bytes]:
    """The CER, then four CCRs per session (I, U, U, T), encoded."""
    out = [encode(cer())]
    hop = 2
    groups = [RATING_GROUP]
    for n in range(sessions):
        user, sid = f"u{n % users}", f"gw;{n}"
        for number, (kind, rsu, usu) in enumerate(((c.INITIAL_REQUEST, 100, None),
                                                   (c.UPDATE_REQUEST, 100, 80),
                                                   (c.UPDATE_REQUEST, 100, 80),
                                                   (c.TERMINATION_REQUEST, None, 20))):
            out.append(encode(ccr(sid, user, kind, number, groups, rsu, usu)
                              .to_message(hop, hop)))
            hop += 1
    return out


async def run(sessions: int, users: int, batch: int, profile: bool, freeze_every: int,
              catalog: str) -> float:
    """Feed the CCRs; microseconds per CCR."""
    server = ChargingServer(ServerConfig(port=0, catalog=catalog, diameter="127.0.0.1:0"))
    for u in range(users):
        server.engine.create_subscriber(f"u{u}", Decimal("1000000"))
    assert server.diameter is not None
    conn = DiameterConnection(server.diameter)
    stub = StubTransport()
    conn.connection_made(stub)  # type: ignore[arg-type]
    data = frames(sessions, users)
    conn.data_received(data[0])
    assert conn.machine.open, "the CER was refused"
    reads = [b"".join(data[i:i + batch]) for i in range(1, len(data), batch)]
    profiler = cProfile.Profile() if profile else None

    def feed() -> float:
        started = time.process_time()
        if profiler:
            profiler.enable()
        for n, chunk in enumerate(reads):
            conn.data_received(chunk)
            if freeze_every and n % freeze_every == 0:
                gc.freeze()
        if profiler:
            profiler.disable()
        return time.process_time() - started

    spent = server.context.run(feed)
    counts = server.diameter.front.counts
    if counts.get("stop", 0) != sessions:
        raise SystemExit(f"not every CCR was served as planned: {counts}")
    conn.connection_lost(None)
    per_ccr = spent / (len(data) - 1) * 1e6
    print(f"{per_ccr:.2f} us per CCR ({len(data) - 1} CCRs, {batch} per read)")
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
    finally:
        os.unlink(f.name)
    print("server_path.py, same run: ", end="")
    per_container = server_path.measure(a.sessions, a.users, a.batch, a.freeze_every)
    print(f"ratio {per_ccr / per_container:.2f} (CCR / container; target <= 1.5)")


if __name__ == "__main__":
    main()
