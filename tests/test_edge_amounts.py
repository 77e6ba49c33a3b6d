"""Amounts at the edges: every journal entry carries its currency's places (issue 25
item 9), and no operation leaves the wire's decimal range (item 3)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal as D

import msgpack
import pytest

import cc_client
from cc_server.engine import Catalog, CatalogError, Engine, PricePlan, Refused
from cc_server.engine import subscribers as subs
from cc_server.testing import running_server
from protocol import codec
from protocol import messages as m
from protocol.errors import ErrorCode
from protocol.frames import encode_frame
from protocol.money import minor_units
from tests.netfakes import FakeServer, FrameStream, serve_handshake

T0 = 1_700_000_000.0
K, A, R, T = m.ContainerKind, m.Action, m.Resolution, m.MsgType


def data(volume: int) -> m.ChargeableItem:
    return m.ChargeableItem("data", {"volume": volume})


def run(e: Engine, kind: m.ContainerKind, session: str, *subs_: m.SubRequest,
        user: str = "u", now: float = T0) -> m.ExecuteResult:
    op = f"{session}-{kind.value}-{now}".encode()
    return e.execute(m.Execute(op, kind, user, "DATA", session, subs_), now)


def reserve(rid: str, volume: int, resolution: m.Resolution | None = None,
            ttl: float = 30) -> m.SubRequest:
    return m.SubRequest(A.RESERVE, rid, item=data(volume), ttl=ttl,
                        default_resolution=resolution)


def wire_text(amount: D) -> str:
    """The decimal's text as the server puts it on the wire."""
    ext = msgpack.unpackb(codec.pack(amount), raw=False)
    return str(ext.data.decode("ascii"))


def places(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def every_kind_of_entry(e: Engine) -> None:
    """Journal entries of every kind and reason a server writes, for subscriber "u"."""
    run(e, K.START, "s1", reserve("r1", 100))                              # reserve
    run(e, K.UPDATE, "s1", m.SubRequest(A.CONFIRM, "r1", item=data(30)))   # release, confirm
    run(e, K.START, "s2", reserve("r1", 10), reserve("r2", 10, R.CONFIRMED))
    run(e, K.STOP, "s2", m.SubRequest(A.CANCEL, "r1"))      # stop: release/confirm (stop)
    run(e, K.START, "s3", reserve("r1", 10, R.CONFIRMED, ttl=5), reserve("r2", 10, ttl=5))
    e.expire(T0 + 10)                                        # expiry: release, confirm
    run(e, K.START, "s4", reserve("r1", 10), now=T0 + 20)
    e.cancel_session("s4", T0 + 21)                          # admin release
    e.top_up("u", D(5), T0 + 22)                             # top_up (admin)
    subs.adjust(e, "u", D(30), "goodwill", T0 + 23)          # adjust credit: top_up
    subs.adjust(e, "u", D("-0.5"), "fee", T0 + 24)           # adjust debit: confirm
    subs.set_counter(e, "u", "free_data", D(40), "plan", T0 + 25)   # counter up
    subs.set_counter(e, "u", "free_data", D(10), None, T0 + 26)     # counter down
    subs.reset_counter(e, "u", "free_data", None, T0 + 27)          # counter removed
    # a starved reservation confirmed without an item: a confirm of nothing
    run(e, K.START, "s5", reserve("r1", 100), now=T0 + 30)
    subs.adjust(e, "u", -e.get_subscriber("u").available, "drain", T0 + 31)
    run(e, K.UPDATE, "s5", m.SubRequest(A.CONFIRM_AND_RESERVE, "r1", item=data(100),
                                        next_item=data(100), ttl=30), now=T0 + 32)
    run(e, K.STOP, "s5", m.SubRequest(A.CONFIRM, "r1"), now=T0 + 33)


def test_every_journal_entry_carries_the_currency_places() -> None:
    """PROTOCOL.md section 3: every amount the server sends has at least its currency's
    places. Counter changes wrote "0" and adjustments "30", "0.5" (issue 25 item 9)."""
    e = Engine()
    e.create_subscriber("u", D(10), "EUR", {"free_data": D(5)})
    every_kind_of_entry(e)
    txs = e.transactions(user_id="u")
    kinds = {(t.kind, t.reason) for t in txs}
    assert kinds == {(k, r) for k in m.TxKind for r in m.TxReason} - {
        (m.TxKind.RESERVE, m.TxReason.STOP), (m.TxKind.RESERVE, m.TxReason.EXPIRY),
        (m.TxKind.RESERVE, m.TxReason.ADMIN), (m.TxKind.TOP_UP, m.TxReason.REQUEST),
        (m.TxKind.TOP_UP, m.TxReason.STOP), (m.TxKind.TOP_UP, m.TxReason.EXPIRY),
        # refills need a plan with allowances: test_plans.py checks their places
        *((k, m.TxReason.REFILL) for k in m.TxKind)}
    assert any(t.counters for t in txs if t.reason is m.TxReason.ADMIN)
    for tx in txs:
        text = wire_text(tx.amount)
        assert places(text) >= 2, (tx, text)
    assert [wire_text(t.amount) for t in txs if t.reason is m.TxReason.ADMIN
            and t.kind is not m.TxKind.RELEASE][:6] == \
        ["5.00", "30.00", "0.50", "0.00", "0.00", "0.00"]


@pytest.mark.parametrize("currency", ["JPY", "KWD", "CLF"])
def test_admin_entries_carry_the_places_of_any_currency(currency: str) -> None:
    e = Engine()
    e.create_subscriber("u", D(10), currency)
    e.top_up("u", D(5), T0)
    subs.adjust(e, "u", D(30), "goodwill", T0)
    subs.adjust(e, "u", D("-0.5"), "fee", T0)
    subs.set_counter(e, "u", "c", D(3), None, T0)
    subs.reset_counter(e, "u", "c", None, T0)
    txs = e.transactions(user_id="u")
    assert len(txs) == 5
    for tx in txs:
        assert places(wire_text(tx.amount)) >= minor_units(currency), tx


# ------------------------------------------------------------------ item 3: the wire's range

BIG = D("9E24")


def big_engine(balance: D = D(0)) -> Engine:
    """An engine whose BIG/unit costs 1E11 EUR a unit: confirmations can be huge."""
    plan = PricePlan("BIG", "unit", "n", D(1), {"EUR": D("100000000000.00")})
    e = Engine(Catalog({("BIG", "unit"): plan}))
    e.create_subscriber("u", balance)
    return e


def big(n: int) -> m.ChargeableItem:
    return m.ChargeableItem("unit", {"n": n})


def state(e: Engine) -> tuple[object, ...]:
    sub = e.get_subscriber("u")
    sessions = [(s.session_id, [(r.reservation_id, r.state, r.amount) for r in s.reservations])
                for s in e.find_sessions(user_id="u")]
    return sub, sessions, len(e.journal)


def refused(call: Callable[[], object], e: Engine) -> str:
    before = state(e)
    with pytest.raises(Refused) as info:
        call()
    assert info.value.code == ErrorCode.INVALID_REQUEST
    assert state(e) == before
    assert "outside the wire's range" in info.value.message
    return info.value.message


def test_admin_commands_that_would_leave_the_range_are_refused_changing_nothing() -> None:
    e = big_engine(BIG)
    refused(lambda: e.top_up("u", BIG, T0), e)                          # the case
    refused(lambda: subs.adjust(e, "u", BIG, "x", T0), e)
    e.top_up("u", D("999999999999999999999999.99"), T0)                 # just below: fine
    assert e.get_subscriber("u").balance == D("9999999999999999999999999.99")
    refused(lambda: e.top_up("u", D("0.01"), T0), e)
    subs.adjust(e, "u", -BIG - BIG, "debt", T0)                          # a debt is fine
    refused(lambda: subs.adjust(e, "u", -BIG, "x", T0), e)               # past -1E25
    refused(lambda: subs.set_counter(e, "u", "c", D("1E25"), None, T0), e)
    with pytest.raises(Refused):
        e.create_subscriber("v", D(1), "EUR", {"c": D("1E25")})
    with pytest.raises(Refused):
        e.create_subscriber("v", D("1E25"))
    assert "v" not in e.accounts


def test_charges_that_would_leave_the_range_are_refused_changing_nothing() -> None:
    e = big_engine(D(10))
    start = m.SubRequest(A.RESERVE, "r1", item=big(0), ttl=30)
    e.execute(m.Execute(b"s", K.START, "u", "BIG", "s", (start,)), T0)
    # one confirmation of 1E11 * 1E17 = 1E28: the amount itself is out of range
    huge = m.SubRequest(A.CONFIRM, "r1", item=big(10**17))
    before = state(e)
    out = e.execute(m.Execute(b"u1", K.UPDATE, "u", "BIG", "s", (huge,)), T0).outcomes[0]
    assert out.error == ErrorCode.INVALID_REQUEST and "outside the wire's range" in out.message
    assert state(e) == before
    # confirmations of 9E24 each: the second would take the balance past -1E25
    n = 9 * 10**13
    for i, expect in enumerate([None, ErrorCode.INVALID_REQUEST]):
        sub = m.SubRequest(A.CONFIRM_AND_RESERVE, "r1", item=big(n), next_item=big(0), ttl=30)
        before = state(e)
        out = e.execute(m.Execute(b"c%d" % i, K.UPDATE, "u", "BIG", "s", (sub,)),
                        T0 + i).outcomes[0]
        assert out.error == expect, out
    assert state(e) == before
    assert e.get_subscriber("u").balance == D(10) - BIG
    sub = m.SubRequest(A.CONFIRM, "r1", item=big(n))
    out = e.execute(m.Execute(b"c3", K.UPDATE, "u", "BIG", "s", (sub,)), T0 + 5).outcomes[0]
    assert out.error == ErrorCode.INVALID_REQUEST and state(e) == before
    assert e.execute(m.Execute(b"c4", K.STOP, "u", "BIG", "s", (m.SubRequest(
        A.CONFIRM, "r1", item=big(1)),)), T0 + 6).outcomes[0].error is None


async def test_a_top_up_past_the_range_is_refused_and_the_subscriber_stays_readable() -> None:
    """Issue 25 item 3: 9E24 onto 9E24 was applied, and the subscriber then unreadable."""
    async with running_server() as server, cc_client.connect(server.url) as client:
        await client.admin.create_subscriber("rich", BIG)
        with pytest.raises(cc_client.InvalidRequest, match="outside the wire's range"):
            await client.admin.top_up("rich", BIG)
        assert (await client.admin.get_subscriber("rich")).balance == BIG
        assert [s.balance for s in await client.admin.list_subscribers()] == [BIG]
        assert [t.kind for t in await client.admin.transactions(user_id="rich")] == []


async def _bad_decimal_server(stream: FrameStream) -> None:
    """A fake server whose every reply carries a decimal the wire cannot carry."""
    await serve_handshake(stream)
    bad = msgpack.ExtType(1, b"18000000000000000000000000.00")
    while (frame := await stream.read_frame(5)) is not None:
        if frame.type == T.ADMIN:
            sub = {"user": "u", "currency": "EUR", "balance": bad, "reserved": bad,
                   "available": bad, "counters": {}, "counters_reserved": {}}
            args = msgpack.unpackb(frame.body)
            value = [sub] if args["cmd"] == "list_subscribers" else sub
            body = msgpack.packb({"value": value})
            stream.send_raw(encode_frame(T.ADMIN_RESULT, frame.request_id, body))
        elif frame.type == T.EXECUTE:
            rating = [bad, "EUR", []]
            outcome = ["r1", None, None, None, None, rating, None, None, False]
            body = msgpack.packb({"session": "s", "results": [outcome]})
            stream.send_raw(encode_frame(T.EXECUTE_RESULT, frame.request_id, body))


async def test_an_unreadable_reply_is_a_charging_error() -> None:
    """The client lets no exception but ChargingError out of a call (item 3)."""
    async with FakeServer(_bad_decimal_server) as fake, \
            cc_client.connect(fake.url) as client:
        for call in (lambda: client.admin.get_subscriber("u"),
                     lambda: client.admin.top_up("u", 1),
                     client.admin.list_subscribers):
            with pytest.raises(cc_client.InvalidReply, match="outside the supported range"):
                await call()
        op = client.create_session_start_operation(user_id="u", service_id="DATA",
                                                   session_id="s")
        op.prepare_reserve("r1", cc_client.ChargeableItem("data", {"volume": 1}), ttl=30)
        with pytest.raises(cc_client.InvalidReply):
            await op.execute()
        with pytest.raises(cc_client.InvalidArgument):
            await client.admin.transactions(after=2**70)
        assert issubclass(cc_client.InvalidReply, cc_client.CommunicationFailure)


@pytest.mark.parametrize("seed", [{"user_id": "s", "balance": "1E25"},
                                  {"user_id": "s", "counters": {"c": "1E25"}},
                                  {"user_id": "s", "balance": "0.0000000000000000001"}])
def test_a_catalog_seed_outside_the_range_is_refused(seed: dict[str, object]) -> None:
    data = {"services": {"DATA": {"items": {"data": {"quantity": "volume", "price": "0.01"}}}},
            "subscribers": [seed]}
    with pytest.raises(CatalogError, match="outside the wire's range"):
        Catalog.from_dict(data)
