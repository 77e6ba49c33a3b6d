"""The client API of SPEC section 6 over real loopback connections."""

from __future__ import annotations

import asyncio
import inspect
import random
import subprocess
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal as D

import pytest

import cc_client
import cc_client.sync
from cc_client import ChargeableItem, Resolution, ResultType
from cc_client.errors import error_from_code
from cc_client.faults import FaultsAPI
from cc_client.operator import OperatorAPI
from cc_server.testing import ManualClock, ServerThread, TestServer, running_server
from protocol import messages as m
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
                      ("OPERATION_ID_REUSED", cc_client.OperationIdReused),
                      ("SERVER_ERROR", cc_client.ServerFailure),
                      ("AUTHENTICATION_FAILED", cc_client.AuthenticationFailed),
                      ("CONTAINER_TOO_LARGE", cc_client.ContainerTooLarge),
                      ("TOO_MANY_PROPERTIES", cc_client.TooManyProperties),
                      ("SHUTTING_DOWN", cc_client.CommunicationFailure)]:
        err = error_from_code(code, "m")
        assert type(err) is cls and err.code == code and err.message == "m"
        assert cls.__module__ == "cc_client.errors" and cls.__name__ in cc_client.__all__
    assert isinstance(error_from_code("CONTAINER_TOO_LARGE"), cc_client.LimitExceeded)
    assert isinstance(error_from_code("OPERATION_ID_REUSED"), cc_client.OperationFailure)
    assert type(error_from_code("SOMETHING_NEW")) is cc_client.OperationFailure


def test_error_classes_are_real_classes_with_their_own_docs() -> None:
    """One class statement per code (mypy can use them as types); each says what it is."""
    for name in cc_client.__all__:
        cls = getattr(cc_client, name)
        if isinstance(cls, type) and issubclass(cls, cc_client.ChargingError):
            assert cls.__doc__ and not cls.__doc__.startswith("Error code"), name
            assert inspect.getsource(cls).startswith(f"class {name}("), name


def test_sync_is_reachable_after_a_plain_import() -> None:
    code = "import cc_client; assert callable(cc_client.sync.connect)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_local_refusals_are_charging_errors_with_the_same_text(
        client: cc_client.Client) -> None:
    """Each argument the client refuses before sending raises a ChargingError: the limit's
    own class, else an InvalidRequest that is also the ValueError/TypeError it used to be."""
    op = client.create_session_start_operation(user_id="u", service_id="DATA", session_id="s")
    refusals: list[tuple[Callable[[], object], type[Exception], type[Exception], str]] = [
        (lambda: op.set_reservation_renewal_listener_id(128), cc_client.InvalidArgument,
         ValueError, "listener id must be an int in 1..127"),
        (lambda: op.set_external_data(b"x" * 4097), cc_client.ExternalDataTooLarge,
         cc_client.LimitExceeded, "external data is limited to 4096 bytes (got 4097)"),
        (lambda: op.set_external_data("text"),  # type: ignore[arg-type]
         cc_client.InvalidArgumentType, TypeError, "external data must be bytes"),
        (lambda: op.prepare_reserve("r1", data(1), ttl="30"),  # type: ignore[arg-type]
         cc_client.InvalidArgumentType, TypeError, "ttl must be a number of seconds, not str"),
        (lambda: op.prepare_reserve("r1", data(1), 30, "MAYBE"),  # type: ignore[arg-type]
         cc_client.InvalidArgument, ValueError, "'MAYBE' is not a valid Resolution"),
        (lambda: op.prepare_reserve("", data(1), ttl=30), cc_client.InvalidArgument,
         ValueError, "reservation_id must be a non-empty str"),
        (lambda: op.prepare_reserve("r1", "data", ttl=30),  # type: ignore[arg-type]
         cc_client.InvalidArgumentType, TypeError, "item must be a ChargeableItem or None"),
        (lambda: op.set_result_type("SOME"),  # type: ignore[arg-type]
         cc_client.InvalidArgument, ValueError, "'SOME' is not a valid ResultType"),
        (lambda: client.create_session_start_operation("", "DATA", "s"),
         cc_client.InvalidArgument, ValueError, "user_id must be a non-empty str"),
        (lambda: ChargeableItem("data", {"volume": 1.5}),  # type: ignore[dict-item]
         cc_client.InvalidArgumentType, TypeError,
         "property 'volume': float is not a property type; use str, int, Decimal, bool or "
         "an aware datetime (use decimal.Decimal for fractions)"),
        (lambda: ChargeableItem("data", {f"p{i}": i for i in range(65)}),
         cc_client.TooManyProperties, cc_client.LimitExceeded,
         "an item has at most 64 properties"),
        (lambda: ChargeableItem("data", {"v": "x" * 4097}), cc_client.StringTooLong,
         cc_client.LimitExceeded, "property 'v': string longer than 4096"),
        (lambda: ChargeableItem("data", {"v": 2**64}), cc_client.InvalidArgument, ValueError,
         "property 'v': integer 18446744073709551616 out of the 64-bit range"),
        (lambda: ChargeableItem("", {}), cc_client.InvalidArgument, ValueError,
         "item name must be None or a non-empty str, not ''"),
    ]
    for call, cls, also, text in refusals:
        with pytest.raises(cls) as info:
            call()
        assert isinstance(info.value, cc_client.ChargingError) and isinstance(info.value, also)
        assert str(info.value) == info.value.message == text
    async_refusals: list[tuple[Awaitable[object], type[Exception], type[Exception], str]] = [
        (client.admin.top_up("u", 1.5),  # type: ignore[arg-type]
         cc_client.InvalidArgumentType, TypeError,
         "amount must be a Decimal, int or decimal string, not float"),
        (client.admin.top_up("u", "ten"), cc_client.InvalidArgument, ValueError,
         "amount: 'ten' is not a decimal number"),
        (client.register_reservation_renewal_listener(0, print), cc_client.InvalidArgument,
         ValueError, "listener id must be in 1..127"),
        (client.register_reservation_renewal_listener(1, "no"),  # type: ignore[arg-type]
         cc_client.InvalidArgumentType, TypeError, "handler must be callable"),
    ]
    for awaitable, cls, also, text in async_refusals:
        with pytest.raises(cls) as info:
            await awaitable
        assert isinstance(info.value, also) and str(info.value) == text
    assert not op.to_message().subs


def test_wire_items_are_instances_of_the_exported_item() -> None:
    """One item type: what a reply decodes to passes for `cc_client.ChargeableItem`."""
    wire = m.ChargeableItem("data", {"volume": 1})
    assert isinstance(wire, ChargeableItem) and issubclass(m.ChargeableItem, ChargeableItem)
    assert ChargeableItem("data", {"volume": 1}) == wire


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


def public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def test_the_sync_facade_spells_out_every_public_method() -> None:
    """The blocking facade has an explicit method for each public one of the async API
    (a new OperatorAPI method needs its wrapper in SyncAdmin), and no catch-all."""
    pairs = [(cc_client.SessionStartOperation, cc_client.sync.SyncStartOperation),
             (cc_client.SessionUpdateOperation, cc_client.sync.SyncUpdateOperation),
             (cc_client.SessionStopOperation, cc_client.sync.SyncStopOperation),
             (OperatorAPI, cc_client.sync.SyncAdmin),
             (FaultsAPI, cc_client.sync.SyncFaults)]
    for async_cls, sync_cls in pairs:
        assert public(async_cls) - {"kind"} <= public(sync_cls), sync_cls
        assert not hasattr(sync_cls, "__getattr__")
    client_api = {"create_session_start_operation", "create_session_update_operation",
                  "create_session_stop_operation", "register_reservation_renewal_listener",
                  "unregister_reservation_renewal_listener", "close"}
    assert client_api <= public(cc_client.sync.SyncClient)
    assert "prepare_confirm" not in public(cc_client.sync.SyncStartOperation)


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
