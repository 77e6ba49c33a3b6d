"""Subscriber administration: list, delete, adjust, counters; negative opening balances;
sessions of a service a catalog change removed.

Engine rules run on `Engine` with the test's clock; the same features then run through
the real client against a loopback server, and across kill -9 with --data-dir.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal as D
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cc_client
from cc_client import ChargeableItem, Resolution
from cc_server.engine import Catalog, CatalogError, Engine, Refused
from cc_server.engine import subscribers as subs
from cc_server.testing import ManualClock, running_server
from protocol import codec
from protocol import messages as m
from protocol.errors import ErrorCode
from tests.serverproc import ServerProcess

T0 = 1_700_000_000.0
K, A = m.ContainerKind, m.Action


def item(volume: int) -> m.ChargeableItem:
    return m.ChargeableItem("data", {"volume": volume})


def start(e: Engine, sid: str, volume: int = 100, user: str = "u", ttl: float = 30,
          resolution: m.Resolution | None = None, now: float = T0) -> None:
    sub = m.SubRequest(A.RESERVE, "r1", item=item(volume), ttl=ttl,
                       default_resolution=resolution)
    result = e.execute(m.Execute(b"op-" + sid.encode(), K.START, user, "DATA", sid, (sub,)),
                       now)
    assert result.outcomes[0].error is None, result


def conserved(e: Engine, initial: dict[str, D], counters: dict[str, dict[str, D]]) -> None:
    """Balance and counters recomputed from the journal alone equal the engine's."""
    balance = dict(initial)
    units: dict[str, defaultdict[str, D]] = {u: defaultdict(D, c) for u, c in counters.items()}
    for tx in e.transactions():
        sign = {m.TxKind.TOP_UP: 1, m.TxKind.CONFIRM: -1}.get(tx.kind)
        if sign is None or tx.user_id not in balance:
            continue
        balance[tx.user_id] += sign * tx.amount
        for name, n in tx.counters.items():
            units[tx.user_id][name] += sign * n
    for user, expected in balance.items():
        if user in e.accounts:
            sub = e.get_subscriber(user)
            assert sub.balance == expected
            assert {k: v for k, v in sub.counters.items() if v} == \
                {k: v for k, v in units[user].items() if v}


def engine_with(*users: str, balance: str = "10", currency: str = "EUR",
                **counters: int) -> Engine:
    e = Engine()
    for u in users:
        e.create_subscriber(u, D(balance), currency, {k: D(v) for k, v in counters.items()})
    return e


# ------------------------------------------------------------------ engine: list

def test_list_is_ordered_filtered_and_paged_with_after() -> None:
    e = Engine()
    for uid, cur in [("bob", "EUR"), ("alice", "EUR"), ("al", "USD"), ("carol", "EUR"),
                     ("alf", "EUR")]:
        e.create_subscriber(uid, D(1), cur)
    ids = [s.user_id for s in subs.list_subscribers(e)]
    assert ids == ["al", "alf", "alice", "bob", "carol"]
    assert [s.user_id for s in subs.list_subscribers(e, prefix="al")] == ["al", "alf", "alice"]
    assert [s.user_id for s in subs.list_subscribers(e, prefix="al", currency="EUR")] == \
        ["alf", "alice"]
    first = subs.list_subscribers(e, limit=2)
    second = subs.list_subscribers(e, after=first[-1].user_id, limit=2)
    third = subs.list_subscribers(e, after=second[-1].user_id, limit=2)
    assert [s.user_id for s in first + second + third] == ids
    assert subs.list_subscribers(e, after="carol") == []


def test_the_listing_index_follows_bulk_creation_and_deletion() -> None:
    e = Engine()
    for i in range(40, 0, -1):
        e.create_subscriber(f"u{i:03d}", D(1))
    assert len(subs.list_subscribers(e)) == 40
    for i in range(100, 60, -1):       # more than a few at once: appended, then sorted
        e.create_subscriber(f"u{i:03d}", D(1))
    e.create_subscriber("u050", D(1))  # one: inserted
    subs.delete_subscriber(e, "u001", force=False, now=T0)
    ids = [s.user_id for s in subs.list_subscribers(e, limit=5000)]
    assert ids == sorted(e.accounts) and len(ids) == 80


_OPS = st.lists(st.tuples(st.sampled_from(["create", "delete", "list"]),
                          st.text("abc", max_size=3), st.integers(1, 30),
                          st.sampled_from([None, "EUR", "USD"])), max_size=80)


@settings(max_examples=150, deadline=None)
@given(_OPS)
def test_listing_matches_a_brute_force_scan_through_creates_and_deletes(
        ops: list[tuple[str, str, int, str | None]]) -> None:
    e = Engine()
    for action, text, number, currency in ops:
        uid = text + str(number % 7)
        if action == "create" and uid not in e.accounts:
            e.create_subscriber(uid, D(1), currency or "EUR")
        elif action == "delete" and uid in e.accounts:
            subs.delete_subscriber(e, uid, force=False, now=T0)
        elif action == "list":
            after = uid if number % 2 else None
            expected = sorted(u for u, a in e.accounts.items()
                              if (after is None or u > after) and u.startswith(text)
                              and currency in (None, a.currency))[:number]
            got = subs.list_subscribers(e, prefix=text or None, currency=currency,
                                        after=after, limit=number)
            assert [s.user_id for s in got] == expected


# ------------------------------------------------------------------ engine: delete

def test_delete_is_refused_while_sessions_are_live_and_changes_nothing() -> None:
    e = engine_with("u")
    start(e, "s1")
    before = (e.get_subscriber("u"), e.journal.next_id, e.find_sessions())
    with pytest.raises(Refused) as info:
        subs.delete_subscriber(e, "u", force=False, now=T0 + 1)
    assert info.value.code == ErrorCode.SESSION_EXISTS
    assert "'s1'" in info.value.message and "force" in info.value.message
    assert (e.get_subscriber("u"), e.journal.next_id, e.find_sessions()) == before


def test_forced_delete_releases_every_reservation_journaled_then_removes() -> None:
    e = engine_with("u", "v")
    start(e, "s2", 100, resolution=m.Resolution.CONFIRMED)   # released, not confirmed
    start(e, "s1", 50)
    start(e, "other", 10, user="v")
    released = subs.delete_subscriber(e, "u", force=True, now=T0 + 1)
    assert [(t.session_id, t.kind, t.reason, t.amount) for t in released] == [
        ("s1", m.TxKind.RELEASE, m.TxReason.ADMIN, D("0.50")),
        ("s2", m.TxKind.RELEASE, m.TxReason.ADMIN, D("1.00"))]
    assert "u" not in e.accounts and set(e.sessions) == {"other"}
    assert e.tally.open_reservations == 1
    with pytest.raises(Refused) as info:
        e.get_subscriber("u")
    assert info.value.code == ErrorCode.USER_UNKNOWN
    e.expire(T0 + 100)                 # nothing of the deleted subscriber is left to expire
    assert e.get_subscriber("v").reserved == 0


def test_delete_without_sessions_and_of_an_unknown_user() -> None:
    e = engine_with("u")
    assert subs.delete_subscriber(e, "u", force=False, now=T0) == []
    with pytest.raises(Refused) as info:
        subs.delete_subscriber(e, "u", force=True, now=T0)
    assert info.value.code == ErrorCode.USER_UNKNOWN


# ------------------------------------------------------------------ engine: adjust

def test_adjust_credits_and_debits_journaled_as_top_up_and_confirm() -> None:
    e = engine_with("u")
    assert subs.adjust(e, "u", D("2.50"), "goodwill", T0).balance == D("12.50")
    sub = subs.adjust(e, "u", D("-20"), "fraud chargeback", T0 + 1)
    assert (sub.balance, sub.available) == (D("-7.50"), D("-7.50"))   # a debt
    txs = e.transactions(user_id="u")
    assert [(t.kind, t.reason, t.amount, t.reservation_id, t.session_id) for t in txs] == [
        (m.TxKind.TOP_UP, m.TxReason.ADMIN, D("2.50"), "goodwill", None),
        (m.TxKind.CONFIRM, m.TxReason.ADMIN, D("20"), "fraud chargeback", None)]
    conserved(e, {"u": D(10)}, {"u": {}})


@pytest.mark.parametrize(("amount", "reason"), [(D(0), "x"), (D("-0.00"), "x"),
                                                (D(1), "  ")])
def test_adjust_refuses_zero_and_a_blank_reason(amount: D, reason: str) -> None:
    e = engine_with("u")
    with pytest.raises(Refused) as info:
        subs.adjust(e, "u", amount, reason, T0)
    assert info.value.code == ErrorCode.INVALID_REQUEST
    assert e.get_subscriber("u").balance == 10 and not e.transactions()


def test_adjust_is_exact_beyond_28_digits() -> None:
    e = engine_with("u", balance="1234567890123456789012345.6789")
    sub = subs.adjust(e, "u", D("-0.0001"), "rounding", T0)
    assert sub.balance == D("1234567890123456789012345.6788")


def test_an_adjustment_credit_notifies_a_starved_session() -> None:
    e = engine_with("u", balance="1")
    start(e, "s", 100)                 # holds the whole 1.00
    renew = m.SubRequest(A.CONFIRM_AND_RESERVE, "r1", item=item(100), next_item=item(100),
                         ttl=30)
    e.execute(m.Execute(b"u1", K.UPDATE, "u", "DATA", "s", (renew,)), T0 + 1)
    assert e.get_subscriber("u").reserved == 0          # starved
    subs.adjust(e, "u", D(5), "goodwill", T0 + 2)
    assert list(e.take_renewals().values()) == [m.RenewalReason.CREDIT_AVAILABLE]


# ------------------------------------------------------------------ engine: counters

def test_set_and_reset_counter_are_journaled_and_conserved() -> None:
    e = engine_with("u", free_data=30)
    assert subs.set_counter(e, "u", "free_data", D(50), "monthly", T0).counters == \
        {"free_data": D(50)}
    subs.set_counter(e, "u", "free_data", D(5), None, T0 + 1)
    subs.set_counter(e, "u", "free_data", D(5), None, T0 + 2)   # no change: no entry
    assert subs.reset_counter(e, "u", "free_data", "end of plan", T0 + 3).counters == {}
    txs = e.transactions(user_id="u")
    assert [(t.kind, t.amount, dict(t.counters), t.reservation_id) for t in txs] == [
        (m.TxKind.TOP_UP, D(0), {"free_data": D(20)}, "monthly"),
        (m.TxKind.CONFIRM, D(0), {"free_data": D(45)}, None),
        (m.TxKind.CONFIRM, D(0), {"free_data": D(5)}, "end of plan")]
    conserved(e, {"u": D(10)}, {"u": {"free_data": D(30)}})


def test_a_counter_cannot_go_below_what_reservations_hold() -> None:
    e = engine_with("u", free_data=30)
    start(e, "s", 20)                  # holds 20 free units
    for counter, units in (("free_data", D(19)), ("free_data", None), ("free_data", D(-1)),
                           ("nope", None)):
        with pytest.raises(Refused) as info:
            if units is None:
                subs.reset_counter(e, "u", counter, None, T0)
            else:
                subs.set_counter(e, "u", counter, units, None, T0)
        assert info.value.code == ErrorCode.INVALID_REQUEST
    assert subs.set_counter(e, "u", "free_data", D(20), None, T0).counters == \
        {"free_data": D(20)}


def test_a_negative_opening_balance_is_refused() -> None:
    e = Engine()
    with pytest.raises(Refused) as info:
        e.create_subscriber("u", D("-0.01"))
    assert info.value.code == ErrorCode.INVALID_REQUEST and "adjust" in info.value.message
    assert "u" not in e.accounts
    assert e.create_subscriber("z", D(0)).balance == 0


# ------------------------------------------------------------------ engine: removed service

@pytest.mark.parametrize(("resolution", "balance"), [(m.Resolution.CANCELED, D(10)),
                                                     (m.Resolution.CONFIRMED, D(9))])
def test_a_removed_service_s_reservations_are_settled_at_expiry(
        resolution: m.Resolution, balance: D) -> None:
    e = engine_with("u")
    start(e, "s", 100, resolution=resolution)
    e.catalog = Catalog({k: p for k, p in e.catalog.plans.items() if k[0] != "DATA"})
    renew = m.SubRequest(A.CONFIRM_AND_RESERVE, "r1", ttl=-1)
    (outcome,) = e.execute(m.Execute(b"u1", K.UPDATE, "u", "DATA", "s", (renew,)),
                           T0 + 1).outcomes
    assert outcome.error == ErrorCode.UNKNOWN_CHARGEABLE_ITEM
    assert e.expire(T0 + 30) == 1
    sub = e.get_subscriber("u")
    assert (sub.balance, sub.reserved) == (balance, D(0))
    assert [t.reason for t in e.transactions()][1:] == [m.TxReason.EXPIRY] * (
        2 if resolution is m.Resolution.CONFIRMED else 1)


# ------------------------------------------------------------------ through the client

async def test_the_commands_through_the_client() -> None:
    clock = ManualClock(T0)
    async with running_server(clock=clock) as srv, cc_client.connect(srv.url) as c:
        for uid in ("b", "a2", "a1", "c"):
            await c.admin.create_subscriber(uid, "10", counters={"free_data": 30})
        await c.admin.create_subscriber("a3", "5", currency="USD")
        listed = await c.admin.list_subscribers(prefix="a", currency="EUR")
        assert [s.user_id for s in listed] == ["a1", "a2"]
        assert [s.user_id for s in await c.admin.list_subscribers(after="a2", limit=2)] == \
            ["a3", "b"]
        assert len(await c.admin.list_subscribers()) == 5

        sub = await c.admin.adjust("a1", "-12.5", "chargeback")
        assert sub.balance == D("-2.5")
        sub = await c.admin.set_counter("a1", "free_data", 100, reason="bonus")
        assert sub.counters == {"free_data": D(100)}
        assert (await c.admin.reset_counter("a1", "free_data")).counters == {}
        with pytest.raises(cc_client.InvalidRequest):
            await c.admin.create_subscriber("neg", "-1")

        op = c.create_session_start_operation(user_id="b", service_id="DATA", session_id="s")
        op.prepare_reserve("r1", ChargeableItem("data", {"volume": 100}), ttl=60)
        await op.execute()
        with pytest.raises(cc_client.SessionExists):
            await c.admin.delete_subscriber("b")
        released = await c.admin.delete_subscriber("b", force=True)
        assert [(t.kind, t.amount, dict(t.counters)) for t in released] == [
            ("release", D("0.70"), {"free_data": D(30)})]
        with pytest.raises(cc_client.UserUnknown):
            await c.admin.get_subscriber("b")
        assert await c.admin.find_sessions(session_id="s") == []


@pytest.mark.parametrize(("command", "args"), [
    ("adjust", {"amount": D("1.25"), "reason": "goodwill"}),
    ("set_counter", {"counter": "free_data", "units": D(40)}),
    ("reset_counter", {"counter": "free_data"}),
    ("delete_subscriber", {}),
])
async def test_mutating_commands_are_exactly_once_with_op(command: str,
                                                          args: dict[str, object]) -> None:
    async with running_server() as srv, cc_client.connect(srv.url) as c:
        await c.admin.create_subscriber("u", "10", counters={"free_data": 30})
        request = codec.encode_body(m.AdminRequest(command, {"user": "u", **args}, b"op-1"))
        replies = [await c.call(*request) for _ in range(2)]   # the same op twice
        assert replies[0] == replies[1] and replies[0][0] == m.MsgType.ADMIN_RESULT
        journal = await c.admin.transactions(user_id="u")
        assert len(journal) == (0 if command == "delete_subscriber" else 1)   # applied once


async def test_sessions_of_a_removed_service_are_released_after_a_restart(
        tmp_path: Path) -> None:
    """A restart with a catalog without DATA: updates fail, cancel works, expiry settles."""
    with_data = tmp_path / "with.toml"
    with_data.write_text('[services.DATA.items.data]\nquantity = "volume"\nprice = "0.01"\n'
                         '[services.SMS.items.sms]\nquantity = "count"\nprice = "0.10"\n')
    without = tmp_path / "without.toml"
    without.write_text('[services.SMS.items.sms]\nquantity = "count"\nprice = "0.10"\n')
    clock = ManualClock(T0)
    store = str(tmp_path / "data")
    async with running_server(clock=clock, data_dir=store, catalog=str(with_data)) as srv, \
            cc_client.connect(srv.url) as c:
        await c.admin.create_subscriber("u", "10")
        for sid, resolution in (("keep", Resolution.CONFIRMED), ("drop", Resolution.CANCELED),
                                ("cancel", Resolution.CANCELED)):
            op = c.create_session_start_operation(user_id="u", service_id="DATA",
                                                  session_id=sid)
            op.prepare_reserve("r1", ChargeableItem("data", {"volume": 100}), ttl=60,
                               default_resolution=resolution)
            await op.execute()
    async with running_server(clock=clock, data_dir=store, catalog=str(without)) as srv, \
            cc_client.connect(srv.url) as c:
        assert srv.server.recovery is not None and srv.server.recovery.catalog_changed
        update = c.create_session_update_operation(user_id="u", service_id="DATA",
                                                   session_id="drop")
        update.prepare_confirm_and_reserve("r1")
        result = await update.execute()
        assert isinstance(result["r1"].error, cc_client.UnknownChargeableItem)
        cancel = c.create_session_update_operation(user_id="u", service_id="DATA",
                                                   session_id="cancel")
        cancel.prepare_cancel("r1")
        await cancel.execute()
        assert (await c.admin.get_subscriber("u")).reserved == D("2.00")
        clock.advance(61)
        await srv.settle()
        sub = await c.admin.get_subscriber("u")
        assert (sub.balance, sub.reserved) == (D("9.00"), D(0))   # keep: confirmed as held


# ------------------------------------------------------------------ durability

async def test_the_commands_survive_kill_9(tmp_path: Path) -> None:
    sp = ServerProcess("--data-dir", str(tmp_path)).start()
    try:
        async with cc_client.connect(sp.url) as c:
            for uid in ("gone", "busy", "kept"):
                await c.admin.create_subscriber(uid, "10", counters={"free_data": 30})
            op = c.create_session_start_operation(user_id="busy", service_id="DATA",
                                                  session_id="s")
            op.prepare_reserve("r1", ChargeableItem("data", {"volume": 100}), ttl=600)
            await op.execute()
            await c.admin.delete_subscriber("gone")
            await c.admin.delete_subscriber("busy", force=True)
            await c.admin.adjust("kept", "-3.5", "chargeback")
            await c.admin.set_counter("kept", "free_data", 70)
            await c.admin.reset_counter("kept", "free_data")
            before = (await c.admin.list_subscribers(), await c.admin.transactions(),
                      await c.admin.find_sessions())
        sp.kill9()
        sp.start()
        async with cc_client.connect(sp.url) as c:
            after = (await c.admin.list_subscribers(), await c.admin.transactions(),
                     await c.admin.find_sessions())
        assert after == before
        assert [s.user_id for s in after[0]] == ["kept"]
        assert after[0][0].balance == D("6.5") and after[0][0].counters == {}
    finally:
        sp.stop()


def test_a_catalog_seed_with_a_negative_balance_is_refused() -> None:
    with pytest.raises(CatalogError, match="opening balance"):
        Catalog.from_dict({"services": {"SMS": {"items": {"sms": {
            "quantity": "count", "price": "0.10"}}}},
            "subscribers": [{"user_id": "u", "balance": "-1"}]})


def test_a_removed_service_s_session_is_released_by_stop() -> None:
    e = engine_with("u")
    start(e, "s", 100, resolution=m.Resolution.CONFIRMED)
    e.catalog = Catalog({k: p for k, p in e.catalog.plans.items() if k[0] != "DATA"})
    stop = m.SubRequest(A.CONFIRM, "r1", item=item(10))
    outcomes = e.execute(m.Execute(b"s1", K.STOP, "u", "DATA", "s", (stop,)), T0 + 1).outcomes
    assert outcomes[0].error == ErrorCode.UNKNOWN_CHARGEABLE_ITEM   # cannot be rated ...
    sub = e.get_subscriber("u")
    assert (sub.balance, sub.reserved) == (D(9), D(0))   # ... its clean-up debits what it held
    assert not e.sessions
