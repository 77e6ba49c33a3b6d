"""The compiled and the pure build behave as one: the same write-ahead log gives the same
state whichever build replays it, and the same request stream gets the same reply bytes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path

import pytest

import cc_client
from protocol import buildinfo
from tests.serverproc import ServerProcess
from tests.test_durability import data, picture

ROOT = Path(__file__).resolve().parent.parent


def _env(pure: bool) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k != buildinfo.PURE_ENV}
    return {**environ, buildinfo.PURE_ENV: "1"} if pure else environ


def _python(code: str, pure: bool) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(pure),
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.strip()


def _compiled_available() -> bool:
    """Whether a process without CC_PURE_PYTHON runs the compiled modules (this one may
    have CC_PURE_PYTHON=1 and still find them installed)."""
    code = "from protocol import buildinfo; print(buildinfo.build())"
    return _python(code, pure=False) == "compiled"


needs_both = pytest.mark.skipif(
    not _compiled_available(),
    reason="only the pure build is installed here (no C compiler at install, or installed "
           "with CC_PURE_PYTHON=1): there is no compiled build to compare with")


async def _load(url: str) -> object:
    """Sessions started, updated, stopped, left live and refused; counters, top-ups."""
    async with cc_client.connect(url) as c:
        await c.admin.create_subscriber("alice", D("10"), counters={"free_data": 20})
        await c.admin.create_subscriber("bob", D("0.50"))
        for i in range(12):
            user = "alice" if i % 3 else "bob"
            op = c.create_session_start_operation(user_id=user, service_id="DATA",
                                                  session_id=f"s{i}")
            op.prepare_reserve("r1", data(10 + i), ttl=600)
            if not (await op.execute()).ok:        # bob's run out of credit: refused
                continue
            if i % 2:
                up = c.create_session_update_operation(user_id=user, service_id="DATA",
                                                       session_id=f"s{i}")
                up.prepare_confirm_and_reserve("r1", data(7), None, -1)
                await up.execute()
            if i % 4 == 1:
                stop = c.create_session_stop_operation(user_id=user, service_id="DATA",
                                                       session_id=f"s{i}")
                stop.prepare_confirm("r1", data(3))
                await stop.execute()
        await c.admin.top_up("bob", "2.25")
        await c.admin.set_counter("alice", "free_data", 40, "test")
        return await picture(c, "alice", "bob")


async def _replayed(url: str) -> object:
    async with cc_client.connect(url) as c:
        return await picture(c, "alice", "bob")


@needs_both
@pytest.mark.timeout(120)
@pytest.mark.parametrize("writer_pure", [True, False], ids=["pure-writes", "compiled-writes"])
async def test_a_log_written_by_one_build_replays_the_same_in_the_other(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer_pure: bool) -> None:
    def start(pure: bool) -> ServerProcess:
        if pure:
            monkeypatch.setenv(buildinfo.PURE_ENV, "1")
        else:
            monkeypatch.delenv(buildinfo.PURE_ENV, raising=False)
        return ServerProcess("--data-dir", str(tmp_path)).start()

    def build_of(sp: ServerProcess) -> str:
        started = [line for line in sp.log if "event=started" in line]
        return started[-1].rsplit("build=", 1)[1].split()[0] if started else "?"

    sp = start(writer_pure)
    try:
        before = await _load(sp.url)
        sp.kill9()                     # no snapshot: the restart replays the log
        assert build_of(sp) == ("pure" if writer_pure else "compiled")
        sp = start(not writer_pure)
        after = await _replayed(sp.url)
        assert sp.stop() == 0
        assert build_of(sp) == ("compiled" if writer_pure else "pure")
        assert "event=recovered" in sp.recovered_line()
        assert "records=0" not in sp.recovered_line(), "the log was not replayed"
        assert after == before
    finally:
        sp.stop()


# A fixed request stream through the whole server path (ServerConnection over a stub
# transport, a fixed clock); prints the sha256 of every byte the server wrote.
_STREAM = """
import asyncio, hashlib
from decimal import Decimal
from cc_server.config import ServerConfig
from cc_server.connection import ServerConnection
from cc_server.server import ChargingServer
from protocol import codec, buildinfo
from protocol import messages as m

class Stub:
    def __init__(self): self.out = []
    def write(self, data): self.out.append(bytes(data))
    def get_extra_info(self, name): return ("127.0.0.1", 1) if name == "peername" else None
    def set_write_buffer_limits(self, high=None, low=None): pass
    def get_write_buffer_size(self): return 0
    def pause_reading(self): pass
    def resume_reading(self): pass
    def close(self): pass
    def abort(self): pass
    def is_closing(self): return False

async def main():
    server = ChargingServer(ServerConfig(port=0), clock=lambda: 1_800_000_000.25)
    for u in range(4):
        server.engine.create_subscriber(f"u{u}", Decimal("3.5"))
    stub = Stub()
    conn = ServerConnection(server)
    conn.connection_made(stub)
    conn.data_received(codec.encode(m.Hello(client_name="same-bytes"), 1))
    await asyncio.sleep(0)
    item = m.ChargeableItem("data", {"volume": 100})
    rid = 2
    for n in range(40):
        user, sid = f"u{n % 5}", f"s{n}"     # u4 does not exist: USER_UNKNOWN
        subs = [(m.ContainerKind.START, m.SubRequest(m.Action.RESERVE, "r1", item, ttl=60)),
                (m.ContainerKind.UPDATE, m.SubRequest(m.Action.CONFIRM_AND_RESERVE, "r1",
                                                      item, item, -1)),
                (m.ContainerKind.STOP, m.SubRequest(m.Action.CONFIRM, "r1", item))]
        for k, (kind, sub) in enumerate(subs):
            op = n.to_bytes(8, "big") + k.to_bytes(8, "big")
            conn.data_received(codec.encode(m.Execute(op, kind, user, "DATA", sid, (sub,)),
                                             rid))
            rid += 1
            await asyncio.sleep(0)
    conn.data_received(b"\\x00garbage-that-is-no-frame")
    for _ in range(3):
        await asyncio.sleep(0)
    print(buildinfo.build(), hashlib.sha256(b"".join(stub.out)).hexdigest(),
          sum(map(len, stub.out)))

asyncio.run(main())
"""


@needs_both
def test_both_builds_answer_a_request_stream_with_the_same_bytes() -> None:
    pure = _python(_STREAM, pure=True).split()
    compiled = _python(_STREAM, pure=False).split()
    assert (pure[0], compiled[0]) == ("pure", "compiled")
    assert int(pure[2]) > 10_000, "the stream got answers"
    assert compiled[1:] == pure[1:]


def test_the_stream_script_is_not_vacuous() -> None:
    """Whatever the build: the stream is answered, and twice the same."""
    first, second = (_python(_STREAM, pure=True).split() for _ in range(2))
    assert int(first[2]) > 10_000
    assert first == second
    assert hashlib.sha256(b"").hexdigest() not in first
