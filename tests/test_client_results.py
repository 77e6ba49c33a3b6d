"""`SessionResult` from the wire: every field of every outcome, made when first asked for
(a caller that only checks `ok` never pays for them), with the same values, identities
and order as when made at once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal as D

import cc_client
from cc_client import ChargeableItem, ReservationResult, SessionResult
from protocol import messages as m

WHEN = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)



def test_results_keep_every_field_of_the_wire_outcome() -> None:
    """`SessionResult.from_outcomes` copies each outcome field to its `ReservationResult`,
    and a code becomes its ChargingError class with the message (or the code)."""
    tx = m.Transaction(1, WHEN, "u", "s", "r1", m.TxKind.CONFIRM, m.TxReason.REQUEST,
                       D("1.50"), "EUR")
    rating = m.RatingResult(D("1.50"), "EUR", (tx,))
    item = ChargeableItem("data", {"volume": 5})
    ok = m.Outcome("r1", None, None, m.RatingResult(D("0"), "EUR"), rating, None, item, WHEN,
                   True)
    failed = m.Outcome("r2", "CREDIT_LIMIT_REACHED", "no money")
    bare = m.Outcome("r1", "SESSION_NOT_FOUND")
    result = SessionResult.from_outcomes(*m.ExecuteResult("s", (ok, failed, bare)))
    assert result.session_id == "s" and not result.ok and len(result) == 3
    first, second, third = result
    assert result["r1"] is first and result.keys() == ["r1", "r2", "r1"]
    assert (first.reservation_id, first.error, first.cancel_result, first.confirm_result,
            first.reserve_result, first.granted_item, first.expires_at,
            first.balance_below_zero) == ("r1", None, ok.cancel_result, rating, None, item,
                                          WHEN, True)
    assert type(second.error) is cc_client.CreditLimitReached
    assert (second.error.code, second.error.message) == ("CREDIT_LIMIT_REACHED", "no money")
    assert second.confirm_result is None and second.balance_below_zero is False
    assert type(third.error) is cc_client.SessionNotFound
    assert third.error.message == "SESSION_NOT_FOUND"


def outcomes() -> tuple[m.Outcome, ...]:
    """Two outcomes of r1 (a stop's clean-up repeats an id), one failed, one bare."""
    tx = m.Transaction(1, WHEN, "u", "s", "r1", m.TxKind.CONFIRM, m.TxReason.REQUEST,
                       D("1.50"), "EUR")
    rating = m.RatingResult(D("1.50"), "EUR", (tx,))
    return (m.Outcome("r1", None, None, None, rating, None, None, WHEN),
            m.Outcome("r2", "USER_UNKNOWN", "who"), m.Outcome("r1", None, None, rating))


#: each way to ask a result something, with its answer for `outcomes()`
ASKS: dict[str, tuple[Callable[[SessionResult], object], object]] = {
    "ok": (lambda r: r.ok, False), "len": (len, 3), "iter": (lambda r: len(list(r)), 3),
    "getitem": (lambda r: r["r2"].reservation_id, "r2"), "get": (lambda r: r.get("r9"), None),
    "keys": (lambda r: r.keys(), ["r1", "r2", "r1"]), "in": (lambda r: "r2" in r, True),
    "result": (lambda r: sorted(r.result), ["r1", "r2"]),
}


def test_a_lazy_result_answers_as_one_made_at_once() -> None:
    msg = m.ExecuteResult("s", outcomes())
    eager = SessionResult("s", [ReservationResult.from_outcome(o) for o in msg.outcomes])
    for name, (ask, answer) in ASKS.items():
        lazy = SessionResult.from_outcomes(*msg)
        assert ask(lazy) == answer == ask(eager), name    # asked first, then again
        assert ask(lazy) == answer, name
        assert (lazy.ok, len(lazy), lazy.keys(), repr(lazy)) == \
            (eager.ok, len(eager), eager.keys(), repr(eager))
        made = list(lazy)
        assert [repr(r) for r in made] == [repr(r) for r in eager]
        assert list(lazy) == made and lazy["r1"] is made[0] and lazy.result["r2"] is made[1]
        assert lazy.get("r1") is made[0] and made[2] is not made[0]
        assert type(made[1].error) is cc_client.UserUnknown and made[1].error.message == "who"
    assert repr(SessionResult.from_outcomes(*msg)) == repr(eager)


def test_ok_looks_at_every_outcome() -> None:
    fine = m.Outcome("r1")
    assert SessionResult.from_outcomes(*m.ExecuteResult("s", (fine, fine))).ok
    failing = m.ExecuteResult("s", (fine, m.Outcome("r2", "X")))
    assert not SessionResult.from_outcomes(*failing).ok
    empty = SessionResult.from_outcomes(*m.ExecuteResult("s", ()))
    assert empty.ok and len(empty) == 0 and list(empty) == [] and empty.result == {}
    assert SessionResult("s", [ReservationResult("r1", cc_client.UserUnknown())]).ok is False
