"""The charging engine against SPEC sections 2, 3 and 8, one rule per test.

Everything runs on `cc_server.engine.Engine` directly: no sockets, no clock. Every call
takes `now` (epoch seconds) from the test, so TTLs and expiry are exercised without sleeping.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from cc_server.engine import ChargingSession, Engine, Refused
from protocol import messages as m
from protocol.errors import ErrorCode

UTC = dt.UTC
T0 = 1_700_000_000.0
D = Decimal
A = m.Action
K = m.ContainerKind
START, UPDATE, STOP = K.START, K.UPDATE, K.STOP
CANCELED, CONFIRMED = m.Resolution.CANCELED, m.Resolution.CONFIRMED
SERVICE_ITEM = {"DATA": ("data", "volume"), "VOICE": ("call", "duration"), "SMS": ("sms", "count")}


# ------------------------------------------------------------------ helpers

def engine(balance: str = "10", user: str = "u", retain: int | None = None,
           **counters: int | str) -> Engine:
    """A built-in-catalog engine with one EUR subscriber."""
    e = Engine() if retain is None else Engine(journal_retain=retain)
    e.create_subscriber(user, D(balance), "EUR", {k: D(v) for k, v in counters.items()})
    return e


def data(volume: int | Decimal | None = None, **extra: Any) -> m.ChargeableItem:
    props: dict[str, Any] = dict(extra)
    if volume is not None:
        props["volume"] = volume
    return m.ChargeableItem("data", props)


def call(duration: int | Decimal) -> m.ChargeableItem:
    return m.ChargeableItem("call", {"duration": duration})


def partial(**props: Any) -> m.ChargeableItem:
    """A nameless item: overlaid on the stored reservation item."""
    return m.ChargeableItem(None, props)


def reserve(rid: str, item: m.ChargeableItem | None, ttl: float | None = 30,
            resolution: m.Resolution | None = None,
            inverse: str | None = None) -> m.SubRequest:
    return m.SubRequest(A.RESERVE, rid, item=item, ttl=ttl, default_resolution=resolution,
                        property_to_inverse=inverse)


def confirm(rid: str, item: m.ChargeableItem | None = None) -> m.SubRequest:
    return m.SubRequest(A.CONFIRM, rid, item=item)


def cancel(rid: str) -> m.SubRequest:
    return m.SubRequest(A.CANCEL, rid)


def renew(rid: str, item: m.ChargeableItem | None = None,
          next_item: m.ChargeableItem | None = None, ttl: float | None = -1,
          resolution: m.Resolution | None = None,
          inverse: str | None = None) -> m.SubRequest:
    return m.SubRequest(A.CONFIRM_AND_RESERVE, rid, item=item, next_item=next_item, ttl=ttl,
                        default_resolution=resolution, property_to_inverse=inverse)


def run(e: Engine, kind: m.ContainerKind, sid: str, *subs: m.SubRequest, now: float = T0,
        user: str = "u", service: str = "DATA", **kw: Any) -> m.ExecuteResult:
    req = m.Execute(b"op-" + sid.encode(), kind, user, service, sid, tuple(subs), **kw)
    return e.execute(req, now)


def one(result: m.ExecuteResult) -> m.Outcome:
    (outcome,) = result.outcomes
    return outcome


def ok(outcome: m.Outcome) -> bool:
    return outcome.error is None


def amount(result: m.RatingResult | None) -> Decimal:
    assert result is not None
    return result.amount


def sub(e: Engine, user: str = "u") -> m.Subscriber:
    return e.get_subscriber(user)


def at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, UTC)


def state(e: Engine) -> tuple[Any, ...]:
    """Everything a refused container must leave untouched."""
    return (tuple(e.get_subscriber(u) for u in sorted(e.accounts)), e.journal.next_id,
            tuple(e.transactions()), tuple(e.find_sessions()), dict(e.renewals))


def reservation(e: Engine, sid: str, rid: str) -> m.ReservationInfo:
    (info,) = e.find_sessions(session_id=sid)
    (res,) = [r for r in info.reservations if r.reservation_id == rid]
    return res


def kinds(txs: list[m.Transaction]) -> list[tuple[m.TxKind, Decimal]]:
    return [(tx.kind, tx.amount) for tx in txs]


def start_one(e: Engine, sid: str = "s", rid: str = "r1",
              item: m.ChargeableItem | None = None, ttl: float = 30, now: float = T0,
              service: str = "DATA", **kw: Any) -> m.Outcome:
    outcome = one(run(e, START, sid, reserve(rid, item or data(100), ttl, **kw), now=now,
                      service=service))
    assert ok(outcome), outcome
    return outcome


# ------------------------------------------------------------------ rating (SPEC 2, 8)

@pytest.mark.parametrize(("volume", "price"), [
    (100, "1.00"), (1, "0.01"), (0, "0"), (D("2.5"), "0.03"), (D("0.001"), "0.01"),
])
def test_data_is_rated_per_whole_megabyte_at_one_cent(volume: int | Decimal,
                                                       price: str) -> None:
    e = engine()
    outcome = start_one(e, item=data(volume))
    assert amount(outcome.reserve_result) == D(price)
    assert sub(e).reserved == D(price)


@pytest.mark.parametrize(("duration", "price"), [
    (1, "0.05"), (60, "0.05"), (61, "0.10"), (120, "0.10"), (121, "0.15"), (0, "0"),
    (D("60.5"), "0.10"),
])
def test_voice_is_rated_per_started_minute_at_five_cents(duration: int | Decimal,
                                                          price: str) -> None:
    e = engine()
    outcome = start_one(e, item=call(duration), service="VOICE")
    assert amount(outcome.reserve_result) == D(price)


def test_sms_costs_ten_cents_each_and_has_no_allowance() -> None:
    e = engine(free_data=1000, free_seconds=1000)
    outcome = start_one(e, item=m.ChargeableItem("sms", {"count": 3}), service="SMS")
    assert amount(outcome.reserve_result) == D("0.30")
    assert sub(e).counters_reserved == {}


def test_voice_allowance_covers_first_then_whole_steps() -> None:
    e = engine(free_seconds=30)
    outcome = start_one(e, item=call(100), service="VOICE")
    # 30 s from the counter, 70 s left: two started minutes
    assert amount(outcome.reserve_result) == D("0.10")
    assert sub(e).counters_reserved == {"free_seconds": D(30)}
    assert outcome.reserve_result is not None
    (tx,) = outcome.reserve_result.transactions
    assert tx.counters == {"free_seconds": D(30)}
    done = one(run(e, UPDATE, "s", confirm("r1"), now=T0 + 1, service="VOICE"))
    assert amount(done.confirm_result) == D("0.10")
    s = sub(e)
    assert s.counters == {"free_seconds": D(0)}
    assert s.counters_reserved == {}
    assert s.balance == D("9.90")


def test_data_allowance_covers_part_of_a_decimal_quantity() -> None:
    e = engine(free_data=50)
    outcome = start_one(e, item=data(D("80.5")))
    assert amount(outcome.reserve_result) == D("0.31")    # 30.5 MB -> 31 steps
    assert sub(e).counters_reserved == {"free_data": D(50)}


def test_amounts_are_exact_decimals() -> None:
    e = engine("1.5")
    for i in range(3):
        out = one(run(e, START, f"s{i}", reserve("r", data(D("33.3"))), now=T0))
        assert type(amount(out.reserve_result)) is Decimal
        assert amount(out.reserve_result) == D("0.34")
    s = sub(e)
    assert s.reserved == D("1.02")
    assert (s.balance, s.reserved, s.available) == (D("1.5"), D("1.02"), D("0.48"))
    assert str(s.available) == "0.48"


def test_allowance_held_by_one_reservation_is_not_available_to_another() -> None:
    e = engine(free_data=100)
    first = start_one(e, item=data(80))
    assert amount(first.reserve_result) == D(0)
    second = one(run(e, UPDATE, "s", reserve("r2", data(50))))
    # only 20 MB of the counter is left unreserved: 30 MB paid
    assert amount(second.reserve_result) == D("0.30")
    assert sub(e).counters_reserved == {"free_data": D(100)}
    assert sub(e).counters == {"free_data": D(100)}


def test_allowance_released_by_confirm_and_reserve_is_held_for_the_next_reservation() -> None:
    e = engine(free_data=100)
    start_one(e, item=data(100))
    out = one(run(e, UPDATE, "s", renew("r1", data(30), data(100)), now=T0 + 5))
    assert ok(out)
    assert amount(out.cancel_result) == D(0)        # the held units are released ...
    assert amount(out.confirm_result) == D(0)       # ... 30 of them consumed ...
    assert amount(out.reserve_result) == D("0.30")  # ... and the 70 left held again
    s = sub(e)
    assert s.counters == {"free_data": D(70)}
    assert s.counters_reserved == {"free_data": D(70)}
    assert s.reserved == D("0.30")
    assert reservation(e, "s", "r1").counters == {"free_data": D(70)}


# ------------------------------------------------------------------ reserve / confirm / cancel

def test_reserve_holds_the_rated_amount_until_its_expiry() -> None:
    e = engine()
    out = start_one(e, item=data(250), ttl=45)
    assert amount(out.reserve_result) == D("2.50")
    assert out.granted_item == data(250)
    assert out.expires_at == at(T0 + 45)
    assert out.cancel_result is None and out.confirm_result is None
    s = sub(e)
    assert (s.balance, s.reserved, s.available) == (D(10), D("2.50"), D("7.50"))
    res = reservation(e, "s", "r1")
    assert (res.state, res.amount, res.default_resolution) == ("open", D("2.50"), CANCELED)


def test_confirm_releases_the_reservation_and_debits_the_confirmed_item() -> None:
    e = engine()
    start_one(e, item=data(100))
    out = one(run(e, UPDATE, "s", confirm("r1", data(40)), now=T0 + 3))
    assert ok(out)
    assert amount(out.cancel_result) == D("1.00")
    assert amount(out.confirm_result) == D("0.40")
    assert out.reserve_result is None
    s = sub(e)
    assert (s.balance, s.reserved, s.available) == (D("9.60"), D(0), D("9.60"))
    assert reservation(e, "s", "r1").state == "ended"
    again = one(run(e, UPDATE, "s", confirm("r1"), now=T0 + 4))
    assert again.error == ErrorCode.RESERVATION_NOT_FOUND


def test_cancel_releases_the_reservation_and_ends_the_charging_session() -> None:
    e = engine()
    start_one(e, item=data(100))
    out = one(run(e, UPDATE, "s", cancel("r1"), now=T0 + 1))
    assert ok(out)
    assert amount(out.cancel_result) == D("1.00")
    assert out.confirm_result is None and out.reserve_result is None
    assert (sub(e).balance, sub(e).reserved) == (D(10), D(0))
    assert reservation(e, "s", "r1").state == "ended"
    assert kinds(e.transactions("u")) == [(m.TxKind.RESERVE, D("1.00")),
                                          (m.TxKind.RELEASE, D("1.00"))]


def test_confirm_and_reserve_returns_the_three_rating_results_in_order() -> None:
    e = engine()
    start_one(e, item=data(100))
    out = one(run(e, UPDATE, "s", renew("r1", data(40), data(50), ttl=20), now=T0 + 10))
    assert ok(out)
    assert amount(out.cancel_result) == D("1.00")   # (1) stored reservation released
    assert amount(out.confirm_result) == D("0.40")  # (2) consolidated usage debited
    assert amount(out.reserve_result) == D("0.50")  # (3) new reservation held
    assert out.granted_item == data(50)
    assert out.expires_at == at(T0 + 30)
    s = sub(e)
    assert (s.balance, s.reserved) == (D("9.60"), D("0.50"))
    assert kinds(e.transactions(session_id="s")) == [
        (m.TxKind.RESERVE, D("1.00")), (m.TxKind.RELEASE, D("1.00")),
        (m.TxKind.CONFIRM, D("0.40")), (m.TxKind.RESERVE, D("0.50"))]


@pytest.mark.parametrize("given", [None, partial(), m.ChargeableItem("data", {})],
                         ids=["none", "nameless-empty", "named-empty"])
def test_confirm_of_an_empty_item_charges_the_stored_reservation_item(
        given: m.ChargeableItem | None) -> None:
    e = engine()
    start_one(e, item=data(70))
    out = one(run(e, UPDATE, "s", confirm("r1", given), now=T0 + 1))
    assert amount(out.confirm_result) == D("0.70")
    assert sub(e).balance == D("9.30")


def test_partial_items_are_overlaid_property_by_property_on_the_stored_item() -> None:
    e = engine()
    start_one(e, item=data(100, apn="internet"))
    out = one(run(e, UPDATE, "s", renew("r1", partial(volume=7), partial(volume=20)),
                  now=T0 + 1))
    assert amount(out.confirm_result) == D("0.07")
    assert amount(out.reserve_result) == D("0.20")
    # the nameless next item took the stored name and kept the other properties
    assert out.granted_item == data(20, apn="internet")
    assert reservation(e, "s", "r1").item == data(20, apn="internet")
    done = one(run(e, UPDATE, "s", confirm("r1", partial(apn="ims")), now=T0 + 2))
    assert amount(done.confirm_result) == D("0.20")   # volume from the stored item


def test_negative_ttl_keeps_the_previous_ttl_length_counted_from_the_update() -> None:
    e = engine()
    start_one(e, item=data(10), ttl=30)
    out = one(run(e, UPDATE, "s", renew("r1", data(1), data(10), ttl=-1), now=T0 + 10))
    assert out.expires_at == at(T0 + 40)
    assert e.expire(T0 + 39.9) == 0
    assert reservation(e, "s", "r1").state == "open"
    e.expire(T0 + 40)
    assert e.find_sessions(session_id="s") == []    # cleaned up, and the session went
    assert sub(e).reserved == D(0)


def test_positive_ttl_at_confirm_and_reserve_sets_a_new_ttl() -> None:
    e = engine()
    start_one(e, item=data(10), ttl=30)
    first = one(run(e, UPDATE, "s", renew("r1", data(1), data(10), ttl=5), now=T0 + 10))
    assert first.expires_at == at(T0 + 15)
    kept = one(run(e, UPDATE, "s", renew("r1", data(1), data(10), ttl=-3), now=T0 + 12))
    assert kept.expires_at == at(T0 + 17)       # the new length (5 s) is what is kept
    e.expire(T0 + 16.9)
    assert reservation(e, "s", "r1").state == "open"
    e.expire(T0 + 17)
    assert e.find_sessions(session_id="s") == []
    assert sub(e).reserved == D(0)


def test_fractional_ttl_is_honoured() -> None:
    e = engine()
    out = start_one(e, item=data(10), ttl=0.25)
    assert out.expires_at == at(T0 + 0.25)
    assert e.next_expiry() == T0 + 0.25
    assert e.expire(T0 + 0.2) == 0
    assert e.expire(T0 + 0.25) == 1
    assert sub(e).reserved == D(0)


@pytest.mark.parametrize("ttl", [0, -1, -0.5, None])
def test_reserve_without_a_positive_ttl_fails_only_its_sub_request(ttl: float | None) -> None:
    e = engine()
    res = run(e, START, "s", reserve("bad", data(10), ttl=ttl), reserve("good", data(20)))
    bad, good = res.outcomes
    assert bad.error == ErrorCode.INVALID_REQUEST
    assert bad.reserve_result is None
    assert ok(good)
    assert sub(e).reserved == D("0.20")
    assert [r.reservation_id for r in e.find_sessions(session_id="s")[0].reservations] == \
        ["good"]


def test_confirm_and_reserve_with_ttl_zero_is_invalid_and_changes_nothing() -> None:
    e = engine()
    start_one(e, item=data(100))
    before = state(e)
    out = one(run(e, UPDATE, "s", renew("r1", data(10), data(10), ttl=0), now=T0 + 1))
    assert out.error == ErrorCode.INVALID_REQUEST
    assert out.cancel_result is None and out.confirm_result is None
    assert state(e) == before


# ------------------------------------------------------------------ credit

def test_starved_confirm_and_reserve_applies_release_and_debit_and_stays_open() -> None:
    e = engine("1.00")
    start_one(e, item=data(100), ttl=30)
    out = one(run(e, UPDATE, "s", renew("r1", data(100), data(100), ttl=20), now=T0 + 5))
    assert out.error == ErrorCode.CREDIT_LIMIT_REACHED
    assert amount(out.cancel_result) == D("1.00")
    assert amount(out.confirm_result) == D("1.00")
    assert out.reserve_result is None
    assert out.expires_at == at(T0 + 25)
    s = sub(e)
    assert (s.balance, s.reserved, s.available) == (D(0), D(0), D(0))
    res = reservation(e, "s", "r1")
    assert (res.state, res.amount) == ("starved", D(0))
    assert e.take_renewals() == {}          # starving a session does not queue it
    # still open: it can be confirmed (nothing to release) or expire
    done = one(run(e, UPDATE, "s", confirm("r1", data(0)), now=T0 + 6))
    assert ok(done)
    assert amount(done.cancel_result) == D(0)
    assert sub(e).balance == D(0)


def test_starved_charging_session_expires_by_its_ttl() -> None:
    e = engine("1.00")
    start_one(e, item=data(100), ttl=30, resolution=CONFIRMED)
    run(e, UPDATE, "s", renew("r1", data(100), data(100), ttl=20), now=T0 + 5)
    e.expire(T0 + 25)
    assert e.find_sessions(session_id="s") == []
    assert (sub(e).balance, sub(e).reserved) == (D(0), D(0))


def test_credit_limit_fails_only_its_own_sub_request() -> None:
    e = engine("1.00")
    res = run(e, START, "s", reserve("a", data(30)), reserve("b", data(80)),
              reserve("c", data(70)))
    a, b, c = res.outcomes
    assert ok(a) and ok(c)
    assert b.error == ErrorCode.CREDIT_LIMIT_REACHED
    assert b.reserve_result is None
    assert sub(e).reserved == D("1.00")
    assert sub(e).available == D(0)


def test_confirm_never_fails_for_credit_and_may_take_the_balance_below_zero() -> None:
    e = engine("0.10")
    start_one(e, item=data(10))
    out = one(run(e, UPDATE, "s", confirm("r1", data(500)), now=T0 + 1))
    assert ok(out)
    assert amount(out.confirm_result) == D("5.00")
    assert sub(e).balance == D("-4.90")
    assert sub(e).available == D("-4.90")


def test_inverse_rating_grants_the_largest_affordable_whole_step_quantity() -> None:
    e = engine("0.555")
    out = start_one(e, item=data(100), inverse="volume")
    assert out.granted_item == data(55)
    assert type(out.granted_item.properties["volume"]) is int
    assert amount(out.reserve_result) == D("0.55")
    assert reservation(e, "s", "r1").property_to_inverse == "volume"


def test_inverse_rating_counts_the_allowance_then_whole_steps() -> None:
    e = engine("0.12", free_seconds=30)
    out = start_one(e, item=call(300), service="VOICE", inverse="duration")
    # 30 s free + two paid minutes (0.10) fit in 0.12
    assert out.granted_item == call(150)
    assert amount(out.reserve_result) == D("0.10")
    assert sub(e).counters_reserved == {"free_seconds": D(30)}


def test_inverse_rating_fails_when_not_even_one_step_is_affordable() -> None:
    e = engine("0.10")
    start_one(e, item=data(10))     # 0.10 held: 0 available
    before = state(e)
    out = one(run(e, UPDATE, "s", reserve("r2", data(100), inverse="volume")))
    assert out.error == ErrorCode.CREDIT_LIMIT_REACHED
    assert out.granted_item is None
    assert state(e) == before


def test_inverse_rating_reduces_the_new_reservation_of_confirm_and_reserve() -> None:
    e = engine("1.00")
    start_one(e, item=data(50), inverse="volume")
    out = one(run(e, UPDATE, "s", renew("r1", data(50), data(100)), now=T0 + 1))
    assert ok(out)
    assert out.granted_item == data(50)     # 0.50 left after the 0.50 debit
    assert amount(out.reserve_result) == D("0.50")
    assert sub(e).available == D(0)


def test_property_to_inverse_must_name_the_quantity_property() -> None:
    e = engine()
    out = one(run(e, START, "s", reserve("r1", data(10), inverse="apn")))
    assert out.error == ErrorCode.INVALID_REQUEST
    assert e.find_sessions() == []


# ------------------------------------------------------------------ errors

def test_duplicate_reservation_id_fails_the_sub_request() -> None:
    e = engine()
    res = run(e, START, "s", reserve("r1", data(10)), reserve("r1", data(20)))
    first, dup = res.outcomes
    assert ok(first)
    assert dup.error == ErrorCode.DUPLICATE_RESERVATION
    again = one(run(e, UPDATE, "s", reserve("r1", data(30))))
    assert again.error == ErrorCode.DUPLICATE_RESERVATION
    assert sub(e).reserved == D("0.10")


@pytest.mark.parametrize("request_", [confirm("nope"), cancel("nope"), renew("nope")],
                         ids=["confirm", "cancel", "confirm_and_reserve"])
def test_unknown_reservation_fails_the_sub_request(request_: m.SubRequest) -> None:
    e = engine()
    start_one(e)
    before = state(e)
    out = one(run(e, UPDATE, "s", request_))
    assert out.error == ErrorCode.RESERVATION_NOT_FOUND
    assert state(e) == before


def test_ended_reservation_is_not_found() -> None:
    e = engine()
    start_one(e)
    run(e, UPDATE, "s", cancel("r1"))
    for request_ in (confirm("r1"), cancel("r1"), renew("r1")):
        assert one(run(e, UPDATE, "s", request_)).error == ErrorCode.RESERVATION_NOT_FOUND


def test_start_on_an_existing_session_is_refused_whole() -> None:
    e = engine()
    start_one(e)
    before = state(e)
    with pytest.raises(Refused) as exc:
        run(e, START, "s", reserve("r2", data(5)))
    assert exc.value.code == ErrorCode.SESSION_EXISTS
    assert state(e) == before


@pytest.mark.parametrize("kind", [UPDATE, STOP])
def test_update_or_stop_on_an_unknown_session_is_refused_whole(kind: m.ContainerKind) -> None:
    e = engine()
    e.create_subscriber("v", D(5))
    start_one(e)
    before = state(e)
    for sid, user in (("other", "u"), ("s", "v")):    # unknown id; another user's session
        with pytest.raises(Refused) as exc:
            run(e, kind, sid, confirm("r1"), user=user)
        assert exc.value.code == ErrorCode.SESSION_NOT_FOUND
    assert state(e) == before


def test_update_after_stop_or_expiry_is_session_not_found() -> None:
    e = engine()
    start_one(e, sid="stopped")
    run(e, STOP, "stopped", now=T0 + 1)
    start_one(e, sid="expired", ttl=5)
    e.expire(T0 + 5)
    for sid in ("stopped", "expired"):
        with pytest.raises(Refused) as exc:
            run(e, UPDATE, sid, reserve("r9", data(1)), now=T0 + 6)
        assert exc.value.code == ErrorCode.SESSION_NOT_FOUND


@pytest.mark.parametrize("kind", [START, UPDATE, STOP])
def test_unknown_user_is_refused_whole(kind: m.ContainerKind) -> None:
    e = engine()
    start_one(e)
    before = state(e)
    with pytest.raises(Refused) as exc:
        run(e, kind, "s", reserve("r2", data(1)), user="ghost")
    assert exc.value.code == ErrorCode.USER_UNKNOWN
    assert state(e) == before


@pytest.mark.parametrize("item", [m.ChargeableItem("nope", {"volume": 1}), call(60)],
                         ids=["unknown-name", "voice-item-in-data-session"])
def test_unknown_chargeable_item_fails_the_sub_request(item: m.ChargeableItem) -> None:
    e = engine()
    res = run(e, START, "s", reserve("bad", item), reserve("good", data(5)))
    bad, good = res.outcomes
    assert bad.error == ErrorCode.UNKNOWN_CHARGEABLE_ITEM
    assert ok(good)
    assert sub(e).reserved == D("0.05")


def test_unknown_chargeable_item_at_confirm_changes_nothing() -> None:
    e = engine()
    start_one(e)
    before = state(e)
    for request_ in (confirm("r1", call(60)), renew("r1", None, call(60))):
        out = one(run(e, UPDATE, "s", request_, now=T0 + 1))
        assert out.error == ErrorCode.UNKNOWN_CHARGEABLE_ITEM
    assert state(e) == before


@pytest.mark.parametrize("value", ["100", True, dt.datetime(2026, 1, 1, tzinfo=UTC), None],
                         ids=["str", "bool", "datetime", "missing"])
def test_wrong_or_missing_quantity_property_is_invalid_request(value: Any) -> None:
    e = engine()
    item = m.ChargeableItem("data", {} if value is None else {"volume": value})
    res = run(e, START, "s", reserve("bad", item), reserve("good", data(5)))
    bad, good = res.outcomes
    assert bad.error == ErrorCode.INVALID_REQUEST
    assert ok(good)
    assert sub(e).reserved == D("0.05")


def test_negative_quantity_is_invalid_request() -> None:
    e = engine()
    out = one(run(e, START, "s", reserve("r1", data(-5))))
    assert out.error == ErrorCode.INVALID_REQUEST
    assert sub(e).reserved == D(0)


@pytest.mark.parametrize("request_", [
    confirm("r1", data(D("1E+100"))),
    renew("r1", data(10), data(D("1E+100"))),
], ids=["confirm", "confirm_and_reserve"])
def test_sub_request_refused_for_an_out_of_range_quantity_changes_nothing(
        request_: m.SubRequest) -> None:
    e = engine()
    start_one(e, item=data(100))
    before = state(e)
    out = one(run(e, UPDATE, "s", request_, now=T0 + 1))
    assert out.error == ErrorCode.INVALID_REQUEST
    assert state(e) == before       # SPEC 3: each sub-request runs atomically


# ------------------------------------------------------------------ stop, expiry, removal

def test_stop_cleans_up_unnamed_reservations_with_their_default_resolution() -> None:
    e = engine()
    res = run(e, START, "s", reserve("keep", data(100)),
              reserve("bill", data(50), resolution=CONFIRMED), reserve("used", data(30)))
    assert all(ok(o) for o in res.outcomes)
    out = run(e, STOP, "s", confirm("used", data(20)), now=T0 + 5)
    by_id = {o.reservation_id: o for o in out.outcomes}
    assert set(by_id) == {"used", "keep", "bill"}
    assert amount(by_id["used"].confirm_result) == D("0.20")
    assert amount(by_id["keep"].cancel_result) == D("1.00")
    assert by_id["keep"].confirm_result is None
    assert amount(by_id["bill"].cancel_result) == D("0.50")
    assert amount(by_id["bill"].confirm_result) == D("0.50")
    s = sub(e)
    assert (s.balance, s.reserved) == (D("9.30"), D(0))
    assert e.find_sessions(user_id="u") == []
    assert "s" not in e.sessions
    cleanups = [tx for tx in e.transactions(session_id="s") if tx.reason is m.TxReason.STOP]
    assert sorted((tx.reservation_id or "", tx.kind) for tx in cleanups) == [
        ("bill", m.TxKind.CONFIRM), ("bill", m.TxKind.RELEASE), ("keep", m.TxKind.RELEASE)]


def test_stop_debits_held_allowance_units_for_confirmed_default() -> None:
    e = engine(free_seconds=90)
    start_one(e, item=call(150), service="VOICE", resolution=CONFIRMED)
    run(e, STOP, "s", now=T0 + 1, service="VOICE")
    s = sub(e)
    assert s.counters == {"free_seconds": D(0)}
    assert s.counters_reserved == {}
    assert s.balance == D("9.95")


@pytest.mark.parametrize(("resolution", "balance"), [(CANCELED, "10"), (CONFIRMED, "9.00")])
def test_ttl_expiry_applies_the_default_resolution_and_journals_it(
        resolution: m.Resolution, balance: str) -> None:
    e = engine()
    start_one(e, item=data(100), ttl=10, resolution=resolution)
    assert e.expire(T0 + 9.999) == 0
    assert sub(e).reserved == D("1.00")
    e.expire(T0 + 10)
    s = sub(e)
    assert (s.balance, s.reserved) == (D(balance), D(0))
    expired = [tx for tx in e.transactions("u") if tx.reason is m.TxReason.EXPIRY]
    expected = [(m.TxKind.RELEASE, D("1.00"))]
    if resolution is CONFIRMED:
        expected.append((m.TxKind.CONFIRM, D("1.00")))
    assert kinds(expired) == expected
    assert all(tx.time == at(T0 + 10) for tx in expired)


def test_expiry_with_confirmed_default_consumes_held_allowance() -> None:
    e = engine(free_data=40)
    start_one(e, item=data(100), ttl=10, resolution=CONFIRMED)
    e.expire(T0 + 10)
    s = sub(e)
    assert s.counters == {"free_data": D(0)}
    assert s.balance == D("9.40")
    (confirmed,) = [tx for tx in e.transactions("u") if tx.kind is m.TxKind.CONFIRM]
    assert confirmed.counters == {"free_data": D(40)}


def test_session_is_removed_once_nothing_is_open_and_the_latest_expiry_passed() -> None:
    e = engine()
    run(e, START, "s", reserve("short", data(10), ttl=10), reserve("long", data(10), ttl=30))
    e.expire(T0 + 10)
    assert reservation(e, "s", "short").state == "ended"
    assert e.find_sessions(session_id="s") != []
    run(e, UPDATE, "s", cancel("long"), now=T0 + 20)
    e.expire(T0 + 29.9)
    assert e.find_sessions(session_id="s") != []    # latest expiry not passed yet
    e.expire(T0 + 30)
    assert e.find_sessions(session_id="s") == []
    assert e.find_sessions(user_id="u") == []
    with pytest.raises(Refused) as exc:
        run(e, UPDATE, "s", reserve("again", data(1)), now=T0 + 31)
    assert exc.value.code == ErrorCode.SESSION_NOT_FOUND


def test_session_persists_after_its_last_confirm_until_the_expiry_then_goes() -> None:
    e = engine()
    start_one(e, item=data(10), ttl=30)
    run(e, UPDATE, "s", confirm("r1", data(5)), now=T0 + 1)
    e.expire(T0 + 29)
    assert e.find_sessions(session_id="s") != []
    # still usable: a new charging session may be opened meanwhile
    late = one(run(e, UPDATE, "s", reserve("r2", data(1), ttl=1), now=T0 + 29))
    assert ok(late)
    e.expire(T0 + 30)
    assert e.find_sessions(session_id="s") == []
    assert (sub(e).balance, sub(e).reserved) == (D("9.95"), D(0))


def test_start_whose_only_reservation_fails_leaves_no_session() -> None:
    e = engine("0.05")
    out = one(run(e, START, "s", reserve("r1", data(100))))
    assert out.error == ErrorCode.CREDIT_LIMIT_REACHED
    assert e.find_sessions() == []
    assert ok(one(run(e, START, "s", reserve("r1", data(5)))))


# ------------------------------------------------------------------ result types, journal

def _scenario(e: Engine, result_type: m.ResultType | None) -> list[m.Outcome]:
    outs = [one(run(e, START, "s", reserve("r1", data(100)), result_type=result_type)),
            one(run(e, UPDATE, "s", renew("r1", data(40), data(60)), now=T0 + 1,
                    result_type=result_type)),
            one(run(e, UPDATE, "s", confirm("r1", data(10)), now=T0 + 2,
                    result_type=result_type))]
    assert all(ok(o) for o in outs)
    return outs


def _results(outs: list[m.Outcome]) -> list[m.RatingResult]:
    return [r for o in outs for r in (o.cancel_result, o.confirm_result, o.reserve_result)
            if r is not None]


@pytest.mark.parametrize("result_type", list(m.ResultType))
def test_result_types_shape_results_but_never_the_journal(result_type: m.ResultType) -> None:
    reference = engine()
    _scenario(reference, None)
    e = engine()
    outs = _scenario(e, result_type)
    assert [r.amount for r in _results(outs)] == \
        [D("1.00"), D("1.00"), D("0.40"), D("0.60"), D("0.60"), D("0.10")]
    assert e.transactions() == reference.transactions()
    carried = [tx for r in _results(outs) for tx in r.transactions]
    if result_type is m.ResultType.NO_TRANSACTIONS:
        assert carried == []
    else:
        assert carried == e.transactions()
        assert all(len(r.transactions) >= 1 for r in _results(outs))


def test_the_session_default_result_type_applies_to_later_containers() -> None:
    e = engine()
    first = one(run(e, START, "s", reserve("r1", data(100)),
                    result_type=m.ResultType.NO_TRANSACTIONS))
    assert first.reserve_result is not None and first.reserve_result.transactions == ()
    later = one(run(e, UPDATE, "s", reserve("r2", data(10)), now=T0 + 1))
    assert later.reserve_result is not None and later.reserve_result.transactions == ()
    override = one(run(e, UPDATE, "s", reserve("r3", data(10)), now=T0 + 2,
                       result_type=m.ResultType.ALL_TRANSACTIONS))
    assert override.reserve_result is not None
    assert len(override.reserve_result.transactions) == 1
    assert len(e.transactions(session_id="s")) == 3


def test_every_confirm_is_journaled_even_when_it_costs_nothing() -> None:
    e = engine()
    start_one(e, item=data(10))
    out = one(run(e, UPDATE, "s", confirm("r1", data(0)), now=T0 + 1))
    assert amount(out.confirm_result) == D(0)
    assert out.confirm_result is not None and len(out.confirm_result.transactions) == 1
    assert [tx.kind for tx in e.transactions(session_id="s")] == \
        [m.TxKind.RESERVE, m.TxKind.RELEASE, m.TxKind.CONFIRM]


def test_journal_entries_carry_their_identity_and_are_queryable_per_user_and_session() -> None:
    e = engine()
    e.create_subscriber("v", D(5))
    start_one(e, sid="a", item=data(10))
    one(run(e, START, "b", reserve("x", data(20)), user="v", now=T0 + 1))
    run(e, UPDATE, "a", confirm("r1", data(3)), now=T0 + 2)
    one(run(e, START, "c", reserve("y", data(30)), now=T0 + 3))
    everything = e.transactions()
    assert [tx.transaction_id for tx in everything] == list(range(1, len(everything) + 1))
    assert [tx.user_id for tx in e.transactions(user_id="u")] == ["u"] * 4
    assert [tx.user_id for tx in e.transactions(user_id="v")] == ["v"]
    assert kinds(e.transactions(session_id="a")) == [
        (m.TxKind.RESERVE, D("0.10")), (m.TxKind.RELEASE, D("0.10")),
        (m.TxKind.CONFIRM, D("0.03"))]
    assert e.transactions(user_id="v", session_id="a") == []
    first = e.transactions(session_id="a")[0]
    assert (first.session_id, first.reservation_id, first.reason, first.currency,
            first.time) == ("a", "r1", m.TxReason.REQUEST, "EUR", at(T0))
    after = e.transactions(user_id="u", after=first.transaction_id, limit=2)
    assert [tx.transaction_id for tx in after] == \
        [tx.transaction_id for tx in e.transactions(user_id="u")[1:3]]


def test_top_up_is_journaled_and_credits_the_balance() -> None:
    e = engine()
    snap = e.top_up("u", D("2.50"), T0 + 7)
    assert snap.balance == D("12.50")
    (tx,) = e.transactions("u")
    assert (tx.kind, tx.reason, tx.amount, tx.session_id, tx.reservation_id, tx.time) == \
        (m.TxKind.TOP_UP, m.TxReason.ADMIN, D("2.50"), None, None, at(T0 + 7))
    for bad in (D(0), D("-1")):
        with pytest.raises(Refused) as exc:
            e.top_up("u", bad, T0 + 8)
        assert exc.value.code == ErrorCode.INVALID_REQUEST
    with pytest.raises(Refused) as unknown:
        e.top_up("ghost", D(1), T0)
    assert unknown.value.code == ErrorCode.USER_UNKNOWN
    assert len(e.transactions()) == 1


def test_admin_cancel_session_releases_every_reservation_even_confirmed_default() -> None:
    e = engine()
    run(e, START, "s", reserve("a", data(100), resolution=CONFIRMED), reserve("b", data(50)))
    txs = e.cancel_session("s", T0 + 3)
    assert sorted((tx.reservation_id or "", tx.kind, tx.amount) for tx in txs) == [
        ("a", m.TxKind.RELEASE, D("1.00")), ("b", m.TxKind.RELEASE, D("0.50"))]
    assert all(tx.reason is m.TxReason.ADMIN for tx in txs)
    s = sub(e)
    assert (s.balance, s.reserved) == (D(10), D(0))
    assert e.find_sessions() == []
    with pytest.raises(Refused) as exc:
        e.cancel_session("s", T0 + 4)
    assert exc.value.code == ErrorCode.SESSION_NOT_FOUND


# ------------------------------------------------------------------ renewal bookkeeping

def _starve(e: Engine, sid: str = "s") -> ChargingSession:
    """A charging session of `sid` left open with nothing reserved."""
    out = one(run(e, UPDATE, sid, renew("r1", data(100), data(100)), now=T0 + 1))
    assert out.error == ErrorCode.CREDIT_LIMIT_REACHED
    cs = e.sessions[sid].charging_session("r1")
    assert cs is not None
    return cs


def test_top_up_queues_a_renewal_for_a_starved_charging_session() -> None:
    e = engine("1.00")
    start_one(e, item=data(100))
    cs = _starve(e)
    assert e.take_renewals() == {}
    e.top_up("u", D(5), T0 + 2)
    assert e.take_renewals() == {cs: m.RenewalReason.CREDIT_AVAILABLE}
    assert e.take_renewals() == {}      # drained


def test_a_release_elsewhere_queues_a_renewal_for_a_starved_charging_session() -> None:
    e = engine("1.50")
    start_one(e, sid="other", rid="o", item=data(50))
    start_one(e, item=data(100))
    cs = _starve(e)      # 0.50 held by "other": the new 1.00 does not fit
    assert e.take_renewals() == {}
    run(e, UPDATE, "other", cancel("o"), now=T0 + 2)
    assert e.take_renewals() == {cs: m.RenewalReason.CREDIT_AVAILABLE}


def test_an_expiry_release_queues_a_renewal_for_a_starved_charging_session() -> None:
    e = engine("1.50")
    start_one(e, sid="other", rid="o", item=data(50), ttl=10)
    start_one(e, item=data(100), ttl=60)
    cs = _starve(e)
    e.expire(T0 + 10)
    assert e.take_renewals() == {cs: m.RenewalReason.CREDIT_AVAILABLE}


def test_a_reduced_charging_session_is_queued_when_credit_rises() -> None:
    e = engine("0.30")
    start_one(e, item=data(100), inverse="volume")
    cs = e.sessions["s"].charging_session("r1")
    assert cs is not None
    assert cs.item == data(30)
    assert e.take_renewals() == {}      # being reduced does not queue it either
    e.top_up("u", D(1), T0 + 1)
    assert e.take_renewals() == {cs: m.RenewalReason.CREDIT_AVAILABLE}


def test_no_renewal_when_available_credit_does_not_rise() -> None:
    e = engine("1.00")
    start_one(e, sid="other", rid="o", item=data(10), resolution=CONFIRMED, ttl=5)
    start_one(e, item=data(90))
    _starve(e)
    e.expire(T0 + 5)    # confirmed-default clean-up: released and debited, net zero
    assert e.take_renewals() == {}


def test_request_renewal_queues_an_operator_renewal() -> None:
    e = engine()
    start_one(e)
    cs = e.request_renewal("s", "r1")
    assert e.take_renewals() == {cs: m.RenewalReason.OPERATOR}
    run(e, UPDATE, "s", cancel("r1"), now=T0 + 1)
    for sid, rid, code in (("s", "r1", ErrorCode.RESERVATION_NOT_FOUND),
                           ("s", "zz", ErrorCode.RESERVATION_NOT_FOUND),
                           ("nope", "r1", ErrorCode.SESSION_NOT_FOUND)):
        with pytest.raises(Refused) as exc:
            e.request_renewal(sid, rid)
        assert exc.value.code == code


# ------------------------------------------------------------------ bounded memory

def test_journal_retention_keeps_only_the_newest_entries() -> None:
    retain = 8
    e = engine(retain=retain)
    e.create_subscriber("v", D(0))
    for i in range(1, 41):
        e.top_up("u" if i % 3 else "v", D(i), T0 + i)
    assert e.journal.next_id == 41
    kept = e.transactions()
    assert retain <= len(kept) <= retain + max(1, retain // 16)
    assert [tx.transaction_id for tx in kept] == list(range(41 - len(kept), 41))
    for user in ("u", "v"):
        assert e.transactions(user_id=user) == [tx for tx in kept if tx.user_id == user]
    assert e.get_subscriber("u").balance == D(10) + sum(D(i) for i in range(1, 41) if i % 3)


def test_journal_retention_trims_the_session_index_too() -> None:
    e = engine(retain=4)
    start_one(e, item=data(1))
    for i in range(10):
        out = one(run(e, UPDATE, "s", renew("r1", data(1), data(1)), now=T0 + 1 + i))
        assert ok(out)
    kept = e.transactions()
    assert len(kept) <= 5
    assert e.transactions(session_id="s") == kept
    assert e.transactions(session_id="s")[-1].transaction_id == e.journal.next_id - 1


def test_journal_session_index_with_one_entry_sessions_queries_and_trims() -> None:
    """A session's first entry is indexed on its own, a list from the second on."""
    e = engine("100", retain=16)
    for n in range(40):              # one entry each; every third one gets a second
        assert ok(one(run(e, START, f"s{n}", reserve("r", data(1)), now=T0 + n)))
        if n % 3 == 0:
            assert ok(one(run(e, UPDATE, f"s{n}", renew("r", data(1), data(1)),
                              now=T0 + n + 0.5)))
    kept = e.transactions()
    assert 16 <= len(kept) <= 17
    for n in range(40):
        sid = f"s{n}"
        assert e.transactions(session_id=sid) == [tx for tx in kept if tx.session_id == sid]
        assert e.transactions(user_id="u", session_id=sid) == \
            e.transactions(session_id=sid)
    assert e.transactions(session_id="s39")[0].kind == m.TxKind.RESERVE
    assert e.transactions(session_id="s0") == []


def test_expiry_queue_stays_bounded_under_many_confirm_and_reserve_renewals() -> None:
    e = engine("1000")
    start_one(e, item=data(1), ttl=30)
    largest = 0
    for i in range(5000):
        ttl = -1 if i % 2 else 30
        out = one(run(e, UPDATE, "s", renew("r1", data(1), data(1), ttl=ttl),
                      now=T0 + 1 + i * 0.01))
        assert ok(out)
        largest = max(largest, e.stats()["expiry_queue"])
    assert largest == 1             # one entry per charging session, whatever its renewals
    assert e.stats()["reservations"] == 1
    assert sub(e).reserved == D("0.01")
    assert e.expire(T0 + 1000) == 1        # one live deadline left
    assert e.find_sessions() == []


def test_renewals_sharing_one_deadline_leave_one_live_queue_entry() -> None:
    e = engine("100000")
    start_one(e, ttl=60)
    for _ in range(3000):      # same `now`, same ttl: every deadline is identical
        run(e, UPDATE, "s", renew("r1", data(1), data(1), ttl=60), now=T0)
    assert len(e.expiry) == 1             # one entry per charging session
    assert e.expire(T0 + 60) == 1         # exactly one clean-up is due
    assert sub(e).reserved == 0


def test_confirm_that_takes_the_balance_below_zero_says_so() -> None:
    e = engine("1.00")
    start_one(e, item=data(100))
    out = one(run(e, UPDATE, "s", confirm("r1", data(150)), now=T0 + 1))
    assert ok(out) and out.balance_below_zero and sub(e).balance == D("-0.50")
    start_one(e, sid="t", item=data(0))
    out = one(run(e, UPDATE, "t", cancel("r1"), now=T0 + 2))
    assert not out.balance_below_zero     # only confirms report it


def test_reservations_of_the_same_item_share_it_and_keep_each_value_type_exactly() -> None:
    """Live reservations share one stored item when they hold the same int quantity
    (memory), but a decimal quantity is never replaced by an equal int, nor 100.0 by 100."""
    e = engine("100")
    first = one(run(e, START, "s1", reserve("r", data(100)))).granted_item
    second = one(run(e, START, "s2", reserve("r", data(100)))).granted_item
    assert first == second and first is second
    as_decimal = one(run(e, START, "s3", reserve("r", data(D("100"))))).granted_item
    more_digits = one(run(e, START, "s4", reserve("r", data(D("100.0"))))).granted_item
    assert as_decimal is not None and more_digits is not None
    assert type(as_decimal.properties["volume"]) is Decimal
    assert str(more_digits.properties["volume"]) == "100.0"
    assert one(run(e, UPDATE, "s1", renew("r", data(50), data(100)),
                   now=T0 + 1)).granted_item is first     # a renewal keeps sharing it


def test_the_server_clock_is_kept_to_the_millisecond_and_its_datetimes_are_shared() -> None:
    """Containers of one millisecond share one datetime (memory for millions of entries)."""
    from cc_server.server import wall_clock_ms
    now = wall_clock_ms()
    assert round(now, 3) == now
    e = engine("100")
    first = one(run(e, START, "t1", reserve("r", data(1)), now=T0 + 0.001))
    second = one(run(e, START, "t2", reserve("r", data(1)), now=T0 + 0.001))
    third = one(run(e, START, "t3", reserve("r", data(1)), now=T0 + 0.002))
    times = [o.reserve_result.transactions[0].time for o in (first, second, third)
             if o.reserve_result is not None]
    assert times[0] is times[1] and times[2] != times[1]
    assert times[2] - times[0] == dt.timedelta(milliseconds=1)
