"""Amounts: exact at 30 digits, plain notation with the currency's places, and what
confirming a starved reservation costs."""

from __future__ import annotations

import decimal
from decimal import Decimal

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cc_server.engine import Engine
from protocol import codec
from protocol import messages as m
from protocol.errors import ErrorCode
from protocol.money import EXACT
from tests.test_engine_rules import (
    CONFIRMED,
    STOP,
    UPDATE,
    amount,
    confirm,
    data,
    engine,
    one,
    renew,
    reservation,
    run,
    start_one,
    sub,
)

T0 = 1_700_000_000.0
D = Decimal
CENT = D("0.01")


def wire_text(value: Decimal) -> bytes:
    """The text a decimal has on the wire."""
    ext = msgpack.unpackb(codec.pack(value))
    assert isinstance(ext, msgpack.ExtType) and ext.code == 1
    return ext.data


# ------------------------------------------------------------------ bug 4: exact amounts

# Balances of up to 30 digits: 25 before the point (the wire's range) and 5 after it.
BALANCES = st.decimals(min_value=D("10000.01"), max_value=D("9" * 25 + ".99999"), places=5,
                       allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(balance=BALANCES, volume=st.integers(1, 10**6))
def test_available_is_exact_for_30_digit_balances(balance: Decimal, volume: int) -> None:
    e = engine(str(balance))
    held = volume * CENT
    with decimal.localcontext(EXACT):
        available, spent = balance - held, balance - CENT
    with decimal.localcontext() as ctx:       # a caller's context must not matter
        ctx.prec = 28
        start_one(e, item=data(volume), ttl=30)
        s = sub(e)
        assert (s.balance, s.reserved, s.available) == (balance, held, available)
        assert e.accounts["u"].available == available
        run(e, STOP, "s", confirm("r1", data(1)), now=T0 + 1)
        after = sub(e)
        assert (after.balance, after.reserved, after.available) == (spent, 0, spent)


def test_the_issue_example_is_not_rounded() -> None:
    e = engine("1234567890123456789012345.6789")
    start_one(e, item=data(1), ttl=30)
    run(e, STOP, "s", confirm("r1"), now=T0 + 1)
    s = sub(e)
    assert s.available == s.balance == D("1234567890123456789012345.6689")


# ------------------------------------------------------------------ bug 12: starved

def starved(balance: str = "1.00", resolution: m.Resolution | None = None) -> Engine:
    """r1 of session s starved: its 100 MB were confirmed, 100 more found no credit."""
    e = engine(balance)
    start_one(e, item=data(100), ttl=30, resolution=resolution)
    out = one(run(e, UPDATE, "s", renew("r1", data(100), data(100), ttl=20), now=T0 + 5))
    assert out.error == ErrorCode.CREDIT_LIMIT_REACHED
    assert reservation(e, "s", "r1").state == "starved"
    return e


def test_confirming_a_starved_reservation_without_an_item_confirms_zero() -> None:
    e = starved()
    e.top_up("u", D("5"), T0 + 6)
    out = one(run(e, STOP, "s", confirm("r1"), now=T0 + 7))
    assert out.error is None
    assert (amount(out.cancel_result), amount(out.confirm_result)) == (D("0.00"), D("0.00"))
    assert wire_text(amount(out.confirm_result)) == b"0.00"
    assert sub(e).balance == D("5.00")
    assert e.transactions()[-1].kind == m.TxKind.CONFIRM and e.transactions()[-1].amount == 0


def test_confirming_a_starved_reservation_with_an_item_debits_it_in_full() -> None:
    e = starved()
    e.top_up("u", D("5"), T0 + 6)
    out = one(run(e, STOP, "s", confirm("r1", data(30)), now=T0 + 7))
    assert amount(out.confirm_result) == D("0.30")
    assert sub(e).balance == D("4.70")


def test_renewing_a_starved_reservation_without_an_item_confirms_zero() -> None:
    e = starved()
    e.top_up("u", D("5"), T0 + 6)
    out = one(run(e, UPDATE, "s", renew("r1", None, None, ttl=None), now=T0 + 7))
    assert out.error is None
    assert amount(out.confirm_result) == D("0.00")
    assert amount(out.reserve_result) == D("1.00")     # the stored item: what was asked
    assert out.granted_item == data(100)
    assert out.expires_at is not None
    s = sub(e)
    assert (s.balance, s.reserved) == (D("5.00"), D("1.00"))


def test_a_starved_reservation_expiring_confirmed_debits_nothing() -> None:
    e = starved(resolution=CONFIRMED)
    e.expire(T0 + 30)
    assert sub(e).balance == D("0.00")


# ------------------------------------------------------------------ bug 13: plain amounts

def test_amounts_come_back_with_the_currencys_places_and_no_exponent() -> None:
    e = Engine()
    created = e.create_subscriber("u", D("1E+3"), "EUR")
    assert [wire_text(v) for v in (created.balance, created.reserved, created.available)] == \
        [b"1000.00", b"0.00", b"1000.00"]
    topped = e.top_up("u", D("1E-10"), T0)
    assert wire_text(topped.balance) == b"1000.0000000001"
    assert wire_text(e.transactions()[-1].amount) == b"0.0000000001"
    yen = e.create_subscriber("y", D("5E+2"), "JPY")
    assert wire_text(yen.balance) == b"500" and wire_text(yen.reserved) == b"0"


def test_a_released_starved_reservation_shows_cents() -> None:
    e = starved()
    info = e.find_sessions(session_id="s")[0].reservations[0]
    assert wire_text(info.amount) == b"0.00"
    out = one(run(e, STOP, "s", confirm("r1"), now=T0 + 7))
    assert wire_text(amount(out.cancel_result)) == b"0.00"


def test_a_catalog_price_without_cents_rates_with_cents() -> None:
    from cc_server.engine import Catalog
    catalog = Catalog.from_dict({"services": {"S": {"items": {"i": {
        "quantity": "n", "price": 1}}}}})
    e = Engine(catalog)
    e.create_subscriber("u", D("10"))
    req = m.Execute(b"op", m.ContainerKind.START, "u", "S", "s", (
        m.SubRequest(m.Action.RESERVE, "r1", item=m.ChargeableItem("i", {"n": 2}), ttl=30),))
    out = one(e.execute(req, T0))
    assert wire_text(amount(out.reserve_result)) == b"2.00"


# ------------------------------------------------------------------ cc-admin prints plainly

def test_cc_admin_prints_plain_notation(capsys: pytest.CaptureFixture[str]) -> None:
    from cc_client.admin import main
    from cc_server.testing import ServerThread
    with ServerThread() as server:
        assert main(["--server", server.url, "subscriber", "create", "tiny",
                     "--balance", "1E+3"]) == 0
        assert main(["--server", server.url, "subscriber", "top-up", "tiny", "1E-10"]) == 0
        assert main(["--server", server.url, "transactions", "--user", "tiny"]) == 0
        assert main(["--server", server.url, "subscriber", "show", "tiny", "--json"]) == 0
    out = capsys.readouterr().out
    assert "E-10" not in out and "E+3" not in out, out
    assert "0.0000000001" in out and "1000.0000000001" in out and "0.00" in out
