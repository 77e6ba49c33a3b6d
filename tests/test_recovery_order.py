"""Recovery gives back what the live server acknowledged, whatever the expiry heap did:
equal deadlines, snapshots between them, timer runs cut into batches (issue: expiries
replayed in another order after kill -9)."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from cc_server import server as server_module
from cc_server.wal import iter_log
from protocol import codec
from protocol import messages as m
from tests.simserver import SimServer, differences

A = m.Action


def data(volume: int) -> m.ChargeableItem:
    return m.ChargeableItem("data", {"volume": volume})


def container(op: str, kind: m.ContainerKind, session: str,
              *subs: m.SubRequest) -> m.Execute:
    return m.Execute(op.encode(), kind, "alice", "DATA", session, subs)


def start(op: str, session: str, ttl: float) -> m.Execute:
    return container(op, m.ContainerKind.START, session,
                     m.SubRequest(A.RESERVE, "r", data(10), ttl=ttl))


def extend(op: str, session: str, ttl: float) -> m.Execute:
    return container(op, m.ContainerKind.UPDATE, session,
                     m.SubRequest(A.CONFIRM_AND_RESERVE, "r", data(1), data(10), ttl=ttl))


def releases(sim: SimServer) -> list[tuple[int, str]]:
    """(journal id, session) of each expiry clean-up, in journal order."""
    return [(t.transaction_id, t.session_id) for t in sim.server.engine.transactions()
            if t.reason == m.TxReason.EXPIRY]


async def equal_deadlines(sim: SimServer, snapshot_before_moves: bool) -> None:
    """The issue's reproduction: x comes first with ttl 10, y with ttl 20, then x is
    extended to the same deadline as y; the clock moves 15 s (nothing expires), then 5."""
    await sim.start()
    await sim.admin("create_subscriber", {"user": "alice", "balance": D("10")}, b"c1")
    await sim.execute(start("o1", "x", 10))
    await sim.execute(start("o2", "y", 20))
    await sim.execute(extend("o3", "x", 20))
    if snapshot_before_moves:
        sim.snapshot()
    await sim.admin("clock_advance", {"seconds": 15})
    assert releases(sim) == []
    await sim.admin("clock_advance", {"seconds": 5})


@pytest.mark.parametrize("snapshot_before_moves", [False, True])
async def test_equal_deadlines_expire_in_the_same_order_after_kill_9(
        tmp_path: Path, snapshot_before_moves: bool) -> None:
    sim = SimServer(tmp_path)
    await equal_deadlines(sim, snapshot_before_moves)
    live = sim.picture()
    order = releases(sim)
    # y's deadline was set before x's second one: y is cleaned up first
    assert [s for _, s in order] == ["y", "x"] and order[1][0] == order[0][0] + 1
    sim.crash()
    await sim.start()
    assert releases(sim) == order
    assert differences(sim.picture(), live) == []


async def test_the_log_holds_the_decision_not_the_trigger(tmp_path: Path) -> None:
    sim = SimServer(tmp_path)
    await equal_deadlines(sim, False)
    await sim.stop()
    from cc_server.dispatch import REC_EXPIRED
    expired = [codec.unpack(p) for _, records in iter_log(tmp_path, 0) for p in records
               if codec.unpack(p)[0] == REC_EXPIRED]
    assert [e[2] for e in expired] == [[["y", "r"], ["x", "r"]]]


async def test_a_timer_run_cut_into_batches_replays_the_same_expiries(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One timer run's batch ends inside a group of equal deadlines; the rest comes in
    the next run, after a container has changed the balance."""
    monkeypatch.setattr(server_module, "EXPIRY_BATCH", 2)
    sim = SimServer(tmp_path)
    await sim.start()
    await sim.admin("create_subscriber", {"user": "alice", "balance": D("1")}, b"c1")
    for n in range(4):
        await sim.execute(start(f"s{n}", f"x{n}", 10 if n % 2 == 0 else 20))
    for n in range(0, 4, 2):
        await sim.execute(extend(f"e{n}", f"x{n}", 20))
    await sim.admin("clock_advance", {"seconds": 15})
    await sim.admin("clock_advance", {"seconds": 5}, timers=False)  # one run: two expire
    assert len(releases(sim)) == 2
    stop = container("stop", m.ContainerKind.STOP, "x3", m.SubRequest(A.CONFIRM, "r", data(3)))
    stop_reply = await sim.execute(stop, timers=False)
    assert stop_reply is not None
    await sim.admin("clock_advance", {"seconds": 0})      # the next runs: the rest
    live, order = sim.picture(), releases(sim)
    sim.crash()
    await sim.start()
    assert releases(sim) == order
    assert differences(sim.picture(), live) == []
    assert await sim.execute(stop) == stop_reply           # the stored outcome, unchanged


async def test_a_clock_move_kept_by_a_crash_keeps_its_outcome(tmp_path: Path) -> None:
    """A clock move with an op whose reply was lost: the crash keeps its first record
    only (the expiries it made were cut). Its retry gets the stored outcome: the clock
    does not move twice."""
    sim = SimServer(tmp_path)
    await sim.start()
    await sim.admin("create_subscriber", {"user": "alice", "balance": D("10")}, b"c1")
    await sim.execute(start("o1", "x", 10))
    before = sim.records
    moved = await sim.admin("clock_advance", {"seconds": 10}, b"tick")
    assert sim.records >= before + 2              # the move (with its outcome), the expiry
    clock = sim.server.clock()
    sim.crash(before + 1)
    await sim.start()
    assert sim.server.clock() == clock
    assert await sim.admin("clock_advance", {"seconds": 10}, b"tick") == moved
    assert sim.server.clock() == clock
