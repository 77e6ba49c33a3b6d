"""--dedup-max-entries: an outcome is never forgotten inside its window; at the bound new
operations are refused (TOO_MANY_REQUESTS, retryable) until outcomes age out."""

from __future__ import annotations

import logging
from decimal import Decimal as D
from pathlib import Path

import pytest

from cc_server.metrics import prometheus
from cc_server.store import DataDirError
from cc_server.wal import WalWriter
from protocol import codec
from protocol import messages as m
from protocol.errors import RETRYABLE, ErrorCode
from tests.simserver import SimServer, wal_files


def update(op: str, volume: int) -> m.Execute:
    return m.Execute(op.encode(), m.ContainerKind.UPDATE, "alice", "DATA", "s",
                     (m.SubRequest(m.Action.CONFIRM_AND_RESERVE, "r",
                                   m.ChargeableItem("data", {"volume": volume}),
                                   m.ChargeableItem("data", {"volume": 10}), ttl=300),))


def start() -> m.Execute:
    return m.Execute(b"start", m.ContainerKind.START, "alice", "DATA", "s",
                     (m.SubRequest(m.Action.RESERVE, "r",
                                   m.ChargeableItem("data", {"volume": 10}), ttl=300),))


def code(reply: tuple[int, bytes] | None) -> str | None:
    assert reply is not None
    if reply[0] != m.MsgType.ERROR:
        return None
    error = codec.decode_body(m.MsgType.ERROR, reply[1])
    assert isinstance(error, m.Error)
    return error.code


def balance(sim: SimServer) -> D:
    return sim.server.engine.get_subscriber("alice").balance


async def test_a_retry_inside_the_window_is_never_charged_twice_at_the_bound(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The issue's case: bound 4, an update's reply lost, retried after 12 other
    containers, within the window."""
    sim = SimServer(tmp_path, dedup_max_entries=4, dedup_window=60.0)
    await sim.start()
    await sim.admin("create_subscriber", {"user": "alice", "balance": D("100")}, b"c")
    assert code(await sim.execute(start())) is None
    lost = await sim.execute(update("lost", 25))            # its reply never arrives
    assert code(lost) is None
    charged = balance(sim)
    refused = [code(await sim.execute(update(f"other{n}", 5))) for n in range(12)]
    with caplog.at_level(logging.WARNING, "cc_server"):
        refused.append(code(await sim.execute(update("one more", 5))))
    assert set(refused[1:]) == {ErrorCode.TOO_MANY_REQUESTS}
    assert ErrorCode.TOO_MANY_REQUESTS in RETRYABLE
    assert await sim.execute(update("lost", 25)) == lost    # the stored outcome
    assert balance(sim) == charged - D("0.05") * (refused.count(None))
    stats = sim.server.dispatcher.stats()
    assert stats["dedup"]["refused_full"] == refused.count(ErrorCode.TOO_MANY_REQUESTS)
    assert stats["operations"]["update.TOO_MANY_REQUESTS"] == stats["dedup"]["refused_full"]
    assert "cc_dedup_refused_full_total 12" in prometheus(stats)
    assert "event=dedup_full" in caplog.text
    # the window follows the manual clock: past it, room again, and the old retry applies
    await sim.admin("clock_advance", {"seconds": 61})
    assert len(sim.server.dedup) == 0
    before = balance(sim)
    assert code(await sim.execute(update("lost", 25))) is None
    assert balance(sim) < before
    # and all of it survives a crash
    live = sim.picture()
    sim.crash()
    await sim.start()
    assert sim.picture() == live


async def test_a_log_record_of_an_unknown_kind_is_refused_loudly(tmp_path: Path) -> None:
    sim = SimServer(tmp_path)
    await sim.start()
    await sim.admin("create_subscriber", {"user": "alice", "balance": D("1")}, b"c")
    wal = sim.server.wal
    assert isinstance(wal, WalWriter)
    wal.append(codec.pack([99, 1.0, None]))        # what a later version might write
    await sim.settle()
    sim.crash()
    with pytest.raises(DataDirError, match=r"cannot be applied.*unknown log record kind 99"):
        await sim.start()
    assert any(name.startswith("wal-") for name in wal_files(tmp_path))   # nothing cut
