"""The client API of SPEC section 6 over real loopback connections."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal as D

import pytest

import cc_client
import cc_client.sync
from cc_client import ChargeableItem, Resolution, ResultType
from cc_client.errors import error_from_code
from cc_server.testing import ManualClock, ServerThread, TestServer, running_server
from tests.conftest import new_subscriber


def data(volume: int | D) -> ChargeableItem:
    return ChargeableItem("data", {"volume": volume})


async def start(client: cc_client.Client, user: str, sid: str, volume: int = 100,
                ttl: float = 60, **kw: object) -> cc_client.ReservationResult:
    op = client.create_session_start_operation(user_id=user, service_id="DATA", session_id=sid)
    op.prepare_reserve("r1", data(volume), ttl=ttl, **kw)  # type: ignore[arg-type]
    return (await op.execute())["r1"]


# ------------------------------------------------------------------ local checks

def test_every_spec_code_maps_to_its_class() -> None:
    for code, cls in [("SESSION_NOT_FOUND", cc_client.SessionNotFound),
                      ("CREDIT_LIMIT_REACHED", cc_client.CreditLimitReached),
                      ("INVALID_REQUEST", cc_client.InvalidRequest),
                      ("FORBIDDEN", cc_client.Forbidden),
                      ("USER_EXISTS", cc_client.UserExists),
                      ("SERVER_ERROR", cc_client.ServerFailure),
                      ("AUTHENTICATION_FAILED", cc_client.AuthenticationFailed),
                      ("CONTAINER_TOO_LARGE", cc_client.LimitExceeded)]:
        err = error_from_code(code, "m")
        assert type(err) is cls and err.code == code and err.message == "m"
    assert type(error_from_code("SOMETHING_NEW")) is cc_client.OperationFailure


async def test_local_refusals_before_sending(client: cc_client.Client) -> None:
    op = client.create_session_start_operation(user_id="u", service_id="DATA", session_id="s")
    with pytest.raises(ValueError):
        op.set_reservation_renewal_listener_id(128)
    with pytest.raises(ValueError):
        op.set_external_data(b"x" * 4097)
    with pytest.raises(TypeError):
        op.prepare_reserve("r1", data(1), ttl="30")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Decimal"):
        ChargeableItem("data", {"volume": 1.5})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        await client.admin.top_up("u", 1.5)  # type: ignore[arg-type]


# ------------------------------------------------------------------ over the wire

async def test_re_executing_an_operation_returns_the_stored_outcome(
        client: cc_client.Client) -> None:
    user = await new_subscriber(client, "re-exec")
    op = client.create_session_start_operation(user_id=user, service_id="DATA", session_id="s1")
    op.prepare_reserve("r1", data(100), ttl=60)
    first = await op.execute()
    second = await op.execute()
    assert first["r1"].expires_at == second["r1"].expires_at
    assert (await client.admin.get_subscriber(user)).reserved == D("1.00")
    with pytest.raises(RuntimeError):
        op.prepare_reserve("r2", data(1), ttl=60)


async def test_ttl_expiry_on_a_manual_clock() -> None:
    clock = ManualClock(1_800_000_000.0)
    async with running_server(clock=clock) as server, cc_client.connect(server.url) as client:
        user = await new_subscriber(client, "expiring")
        r = await start(client, user, "s1", ttl=30, default_resolution=Resolution.CONFIRMED)
        assert r.expires_at is not None and r.expires_at.timestamp() == 1_800_000_030.0
        clock.advance(29.9)
        await server.settle()
        assert (await client.admin.get_subscriber(user)).reserved == D("1.00")
        clock.advance(0.2)
        await server.settle()
        sub = await client.admin.get_subscriber(user)
        assert (sub.balance, sub.reserved) == (D("9.00"), D("0.00"))
        kinds = [(t.kind, t.reason) for t in await client.admin.transactions(session_id="s1")]
        assert kinds == [("reserve", "request"), ("release", "expiry"), ("confirm", "expiry")]
        assert await client.admin.find_sessions(session_id="s1") == []


async def test_result_types_shape_results_only(client: cc_client.Client) -> None:
    user = await new_subscriber(client, "shapes")
    op = client.create_session_start_operation(user_id=user, service_id="DATA", session_id="s1")
    op.set_result_type(ResultType.NO_TRANSACTIONS)
    op.prepare_reserve("r1", data(10), ttl=60)
    r = (await op.execute())["r1"]
    assert r.reserve_result is not None and r.reserve_result.transactions == ()
    stop = client.create_session_stop_operation(user_id=user, service_id="DATA", session_id="s1")
    stop.prepare_confirm("r1", data(5))
    r = (await stop.execute())["r1"]   # the session's default (NO_TRANSACTIONS) applies
    assert r.confirm_result is not None and r.confirm_result.transactions == ()
    assert len(await client.admin.transactions(session_id="s1")) == 3


async def test_operator_api(client: cc_client.Client) -> None:
    user = await new_subscriber(client, "op", counters={"free_data": 5})
    with pytest.raises(cc_client.UserExists):
        await client.admin.create_subscriber(user, D(1))
    with pytest.raises(cc_client.UserUnknown):
        await client.admin.get_subscriber("nobody")
    with pytest.raises(cc_client.InvalidRequest):
        await client.admin.top_up(user, D("-1"))
    assert (await client.admin.top_up(user, "0.50")).balance == D("10.50")
    await start(client, user, "s1")
    await start(client, user, "s2")
    (info,) = await client.admin.find_sessions(session_id="s1")
    assert (info.user_id, info.reservations[0].state, info.reservations[0].amount) == (
        user, "open", D("0.95"))
    assert {s.session_id for s in await client.admin.find_sessions(user_id=user)} == {"s1", "s2"}
    released = await client.admin.cancel_session("s2")
    assert [t.kind for t in released] == ["release"]
    with pytest.raises(cc_client.SessionNotFound):
        await client.admin.cancel_session("s2")
    stats = await client.admin.stats()
    assert stats["engine"]["sessions"] == 1


async def test_transactions_are_paged_transparently(client: cc_client.Client) -> None:
    user = await new_subscriber(client, "pages")
    await asyncio.gather(*(client.admin.top_up(user, D("0.01")) for _ in range(2300)))
    entries = await client.admin.transactions(user_id=user)
    assert len(entries) == 2300
    ids = [t.transaction_id for t in entries]
    assert ids == sorted(ids) and len(set(ids)) == 2300
    assert len(await client.admin.transactions(user_id=user, limit=10)) == 10
    assert len(await client.admin.transactions(user_id=user, after=ids[-5])) == 4


async def test_many_connections_charge_one_subscriber(server: TestServer) -> None:
    """16 connections, interleaved starts / renewals / stops: no money appears or vanishes."""
    async with cc_client.connect(server.url) as admin:
        user = await new_subscriber(admin, "shared", "1000.00")
    confirmed = D(0)

    async def worker(w: int) -> D:
        rng = random.Random(w)
        used_total = D(0)
        async with cc_client.connect(server.url) as c:
            for k in range(15):
                sid = f"w{w}-{k}"
                assert (await start(c, user, sid, rng.randint(1, 50))).ok
                up = c.create_session_update_operation(user_id=user, service_id="DATA",
                                                       session_id=sid)
                used = rng.randint(0, 60)
                up.prepare_confirm_and_reserve("r1", data(used), data(rng.randint(1, 50)))
                assert (await up.execute())["r1"].ok
                stop = c.create_session_stop_operation(user_id=user, service_id="DATA",
                                                       session_id=sid)
                last = rng.randint(0, 60)
                stop.prepare_confirm("r1", data(last))
                assert (await stop.execute()).ok
                used_total += D(used + last) / 100
        return used_total

    for used in await asyncio.gather(*(worker(w) for w in range(16))):
        confirmed += used
    async with cc_client.connect(server.url) as admin:
        sub = await admin.admin.get_subscriber(user)
        journal = await admin.admin.transactions(user_id=user)
    assert sub.balance == D("1000.00") - confirmed and sub.reserved == 0
    assert sum(t.amount for t in journal if t.kind == "confirm") == confirmed
    assert sum(t.amount for t in journal if t.kind == "reserve") == \
        sum(t.amount for t in journal if t.kind == "release")


def test_sync_facade_and_server_thread() -> None:
    with ServerThread() as server, cc_client.sync.connect(server.url) as client:
        client.admin.create_subscriber("sync-user", D("10.00"))
        op = client.create_session_start_operation(user_id="sync-user", service_id="DATA",
                                                   session_id="s1")
        assert not hasattr(op, "prepare_confirm")
        op.prepare_reserve("r1", data(100), ttl=60)
        assert op.execute()["r1"].reserve_result.amount == D("1.00")  # type: ignore[union-attr]
        stop = client.create_session_stop_operation(user_id="sync-user", service_id="DATA",
                                                    session_id="s1")
        stop.prepare_confirm("r1", data(25))
        assert stop.execute().ok
        assert client.admin.get_subscriber("sync-user").balance == D("9.75")
        with pytest.raises(cc_client.SessionNotFound):
            client.create_session_update_operation(user_id="sync-user", service_id="DATA",
                                                   session_id="s1").execute()


async def test_below_zero_confirm_is_reported(client: cc_client.Client) -> None:
    user = await new_subscriber(client, "debt", "1.00")
    await start(client, user, "s1")
    stop = client.create_session_stop_operation(user_id=user, service_id="DATA",
                                                session_id="s1")
    stop.prepare_confirm("r1", data(150))
    r = (await stop.execute())["r1"]
    assert r.ok and r.balance_below_zero
    assert (await client.admin.get_subscriber(user)).balance == D("-0.50")


async def test_more_calls_than_the_flow_control_sizes_all_complete(
        client: cc_client.Client, server: TestServer) -> None:
    """Every call gives its window and queue slots back (a leak once stalled the client
    after window + queue calls)."""
    async with cc_client.connect(server.url, queue_size_to_notify=4,
                                 max_queue_size_to_wait=4, request_timeout=2) as small:
        user = await new_subscriber(small, "many")
        for _ in range(3):
            await asyncio.gather(*(small.admin.get_subscriber(user) for _ in range(40)))
        assert small._admission.free == 8 and small._in_flight.free == 4
