"""Amounts at the edges: every journal entry carries its currency's places (issue 25
item 9), and no operation leaves the wire's decimal range (item 3)."""

from __future__ import annotations

from decimal import Decimal as D

import msgpack
import pytest

from cc_server.engine import Engine
from cc_server.engine import subscribers as subs
from protocol import codec
from protocol import messages as m
from protocol.money import minor_units

T0 = 1_700_000_000.0
K, A, R = m.ContainerKind, m.Action, m.Resolution


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
        (m.TxKind.TOP_UP, m.TxReason.STOP), (m.TxKind.TOP_UP, m.TxReason.EXPIRY)}
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
