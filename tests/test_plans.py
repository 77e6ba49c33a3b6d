"""Price plans (README "Price plans"): catalog format, periods, tiers, per-subscriber plans
and allowance refills, on the engine directly with the time passed in."""

from __future__ import annotations

import datetime as dt
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cc_server.engine import Catalog, CatalogError, Engine, Refused, refills
from protocol import messages as m
from protocol.errors import ErrorCode

D = Decimal
A = m.Action
K = m.ContainerKind
PARIS = dt.timezone(dt.timedelta(hours=1))     # Europe/Paris in winter
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "plans.toml"

ISSUE_CATALOG = '''
currency = "EUR"
timezone = "Europe/Paris"        # IANA zone for rate periods and allowance periods; default "UTC"
default_plan = "standard"        # a subscriber without a plan is rated by this one

[plans.standard.services.VOICE.items.call]
quantity = "duration"
step = 60
price = "0.05"                   # price per step when no period matches
allowance = "free_seconds"
rates = [                        # the first matching period sets the price
  { days = "mon-fri", from = "08:00", to = "19:00", price = "0.10" },
  { days = "sat,sun", price = "0.02" },
]

[plans.standard.services.DATA.items.data]
quantity = "volume"
usage_counter = "data_used"      # confirmed quantity accumulates here; it drives the tiers
tiers = [                        # graduated: each unit is priced by the tier it falls in
  { up_to = 1000, price = "0.01" },
  { up_to = 10000, price = "0.005" },
  { price = "0.002" },
]

[[plans.standard.allowances]]
counter = "free_seconds"
units = 3600
every = "month"                  # "day" | "week" | "month": set to `units` at each period start

[plans.premium.services.VOICE.items.call]
quantity = "duration"
step = 1
price = "0.001"
'''


def at(text: str) -> float:
    """Epoch seconds of a Paris winter wall time, "2026-12-07 18:50" (a Monday)."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=PARIS).timestamp()


def catalog(text: str) -> Catalog:
    return Catalog.from_dict(tomllib.loads(text), "test")


def engine(text: str = ISSUE_CATALOG, balance: str = "100", plan: str | None = None,
           **counters: int) -> Engine:
    e = Engine(catalog(text))
    e.create_subscriber("u", D(balance), "EUR", {k: D(v) for k, v in counters.items()}, plan)
    return e


def call(seconds: int) -> m.ChargeableItem:
    return m.ChargeableItem("call", {"duration": seconds})


def data(mb: int) -> m.ChargeableItem:
    return m.ChargeableItem("data", {"volume": mb})


def run(e: Engine, kind: m.ContainerKind, sid: str, *subs: m.SubRequest, now: float,
        service: str = "VOICE") -> dict[str, m.Outcome]:
    result = e.execute(m.Execute(f"op-{sid}-{now}".encode(), kind, "u", service, sid,
                                 tuple(subs)), now)
    return {o.reservation_id: o for o in result.outcomes}


def reserve(item: m.ChargeableItem, rid: str = "r", **kw: Any) -> m.SubRequest:
    return m.SubRequest(A.RESERVE, rid, item=item, ttl=kw.pop("ttl", 3600), **kw)


def renew(used: m.ChargeableItem | None, following: m.ChargeableItem | None = None,
          rid: str = "r") -> m.SubRequest:
    return m.SubRequest(A.CONFIRM_AND_RESERVE, rid, item=used, next_item=following, ttl=-1)


def confirm(used: m.ChargeableItem | None, rid: str = "r") -> m.SubRequest:
    return m.SubRequest(A.CONFIRM, rid, item=used)


def ratings(e: Engine) -> list[tuple[str, Decimal, str | None]]:
    return [(str(t.kind), t.amount, t.rating) for t in e.transactions()]


# ------------------------------------------------------------------ catalog format

def test_the_issue_catalog_loads_as_written() -> None:
    c = catalog(ISSUE_CATALOG)
    assert c.default_plan == "standard" and c.timezone == "Europe/Paris"
    assert sorted(c.named) == ["premium", "standard"]
    voice = c.plans[("VOICE", "call")]
    assert [p.label for p in voice.rates] == ["mon-fri 08:00-19:00", "sat,sun 00:00-24:00"]
    assert voice.rates[0].days == frozenset(range(5))
    tiers = c.plans[("DATA", "data")].tiers
    assert [t.up_to for t in tiers] == [1000, 10000, None]
    assert c.named["standard"].allowances[0].every == "month"
    assert c.item_of("premium", "VOICE", "call").step == 1   # type: ignore[union-attr]


def test_the_old_format_is_one_implicit_plan() -> None:
    c = catalog('[services.SMS.items.sms]\nquantity = "count"\nprice = "0.10"\n')
    assert c.default_plan == "default" and list(c.named) == ["default"]
    assert c.timezone == "UTC" and not c.plans[("SMS", "sms")].dated


def test_examples_plans_toml_loads() -> None:
    c = Catalog.from_dict(tomllib.loads(EXAMPLE.read_text()), str(EXAMPLE))
    assert c.named and c.plans


@pytest.mark.parametrize(("fragment", "named"), [
    ('timezone = "Mars/Olympus"', "timezone"),
    ('default_plan = "gold"', "default_plan"),
    ('[plans.x.services.V.items.c]\nquantity = "duration"\nprice = "1"\n'
     'rates = [{ days = "mon-frx", price = "2" }]', "plans.x.services.V.items.c.rates[0].days"),
    ('[plans.x.services.V.items.c]\nquantity = "duration"\nprice = "1"\n'
     'rates = [{ from = "25:00", price = "2" }]', "rates[0].from"),
    ('[plans.x.services.V.items.c]\nquantity = "duration"\nprice = "1"\n'
     'rates = [{ from = "10:00", to = "10:00", price = "2" }]', "rates[0]"),
    ('[plans.x.services.V.items.c]\nquantity = "duration"\nprice = "1"\n'
     'rates = [{ prices = { USD = "2" } }]', "rates[0]"),
    ('[plans.x.services.V.items.c]\nquantity = "volume"\n'
     'tiers = [{ price = "2" }, { up_to = 5, price = "1" }]', "tiers[0]"),
    ('[plans.x.services.V.items.c]\nquantity = "volume"\n'
     'tiers = [{ up_to = 5, price = "2" }, { up_to = 5, price = "1" }]', "tiers[1].up_to"),
    ('[plans.x.services.V.items.c]\nquantity = "volume"\nprice = "1"\n'
     'tiers = [{ price = "2" }]', "items.c"),
    ('[plans.x.services.V.items.c]\nquantity = "volume"\nprice = "1"\nrates = []\n'
     'tiers = [{ price = "2" }]', "items.c"),
    ('[plans.x.services.V.items.c]\nquantity = "volume"\nprice = "1"\n'
     '[[plans.x.allowances]]\ncounter = "c"\nunits = 5\nevery = "year"', "allowances[0].every"),
    ('[plans.x.services.V.items.c]\nquantity = "volume"\nprice = "1"\n'
     '[[plans.x.allowances]]\ncounter = "c"\nunits = -5\nevery = "day"', "allowances[0].units"),
    ('[plans.x.services.V.items.c]\nquantity = "volume"\nprice = "1"\n'
     '[[subscribers]]\nuser_id = "a"\nplan = "y"', "subscribers[0].plan"),
])
def test_invalid_catalogs_are_refused_naming_the_key(fragment: str, named: str) -> None:
    text = fragment if "[plans." in fragment else \
        fragment + '\n[services.S.items.s]\nquantity = "count"\nprice = "1"\n'
    with pytest.raises(CatalogError) as info:
        catalog(text)
    assert named in str(info.value)


def test_days_wrap_and_periods_wrap_past_midnight() -> None:
    c = catalog('[services.V.items.c]\nquantity = "duration"\nprice = "1"\n'
                'rates = [{ days = "fri-mon", from = "22:00", to = "06:00", price = "0.5" }]\n')
    period = c.plans[("V", "c")].rates[0]
    assert period.days == frozenset({4, 5, 6, 0})
    assert period.matches(4, 23 * 60) and period.matches(5, 5 * 60)   # fri 23:00, sat 05:00
    assert period.matches(1, 60)          # tue 01:00: the night that began on monday
    assert not period.matches(1, 23 * 60) and not period.matches(0, 12 * 60)


# ------------------------------------------------------------------ periods

def test_confirm_and_reserve_across_19h_rates_each_result_at_its_date() -> None:
    """Reserved at 18:50 at the 0.10 peak, updated at 19:05: the cancel result releases
    what was held, the confirmation is rated at the reservation's date (18:50, whole),
    the new reservation at the update's date (19:05, off-peak 0.05)."""
    e2 = engine(free_seconds=0)   # no allowance left: money only
    first = run(e2, K.START, "s", reserve(call(600)), now=at("2026-12-07 18:50"))
    assert first["r"].reserve_result.amount == D("1.00")   # 10 steps x 0.10
    update = run(e2, K.UPDATE, "s", renew(call(600)), now=at("2026-12-07 19:05"))["r"]
    assert update.cancel_result.amount == D("1.00")        # exactly what was held
    assert update.confirm_result.amount == D("1.00")       # usage began at 18:50: peak
    assert update.reserve_result.amount == D("0.50")       # 10 steps x 0.05 off-peak
    sub = e2.get_subscriber("u")
    assert sub.balance == D("99.00") and sub.reserved == D("0.50")
    notes = [t.rating for t in e2.transactions()]
    assert notes[0] == "period 1 (mon-fri 08:00-19:00): 10 x 0.10"
    assert notes[1] is None                                # a release is never re-rated
    assert notes[2] == "period 1 (mon-fri 08:00-19:00): 10 x 0.10"
    assert notes[3] == "no period: item price: 10 x 0.05"


def test_a_duration_crossing_a_period_boundary_is_rated_whole() -> None:
    e = engine(free_seconds=0)
    # 18:55 + 20 minutes ends at 19:15: all 20 steps at the peak price of 18:55
    r = run(e, K.START, "s", reserve(call(1200)), now=at("2026-12-07 18:55"))
    assert r["r"].reserve_result.amount == D("2.00")


def test_weekend_period_and_allowance_first() -> None:
    e = engine()                                            # 3600 free seconds (allowance)
    assert e.get_subscriber("u").counters == {"free_seconds": D(3600)}
    r = run(e, K.START, "s", reserve(call(3720)), now=at("2026-12-12 10:00"))   # saturday
    assert r["r"].reserve_result.amount == D("0.04")       # 3600 covered, 2 steps x 0.02
    tx = e.transactions()[-1]
    assert tx.counters == {"free_seconds": D(3600)}
    assert tx.rating == "allowance free_seconds: 3600; period 2 (sat,sun 00:00-24:00): 2 x 0.02"


# ------------------------------------------------------------------ tiers

TIERED = '''
[services.DATA.items.data]
quantity = "volume"
usage_counter = "data_used"
tiers = [{ up_to = 100, price = "0.01" }, { price = "0.005" }]
'''


def test_150_mb_confirmed_across_a_100_mb_tier_boundary() -> None:
    e = engine(TIERED)
    now = 1_800_000_000.0
    run(e, K.START, "s", reserve(data(150)), now=now, service="DATA")
    r = run(e, K.STOP, "s", confirm(data(150)), now=now + 10, service="DATA")["r"]
    assert r.confirm_result.amount == D("1.25")            # 100 x 0.01 + 50 x 0.005
    confirm_tx = next(t for t in e.transactions() if t.kind is m.TxKind.CONFIRM)
    assert confirm_tx.rating == ("tier 1 (0 to 100): 100 in 100 x 0.01; "
                                 "tier 2 (above 100): 50 in 50 x 0.005")
    sub = e.get_subscriber("u")
    assert sub.counters == {"data_used": D(150)} and sub.balance == D("98.75")
    # the next MB is in tier 2 from the start
    run(e, K.START, "s2", reserve(data(10)), now=now + 20, service="DATA")
    assert e.get_subscriber("u").reserved == D("0.050")


def test_reserved_unconfirmed_quantity_does_not_count_toward_the_tier() -> None:
    e = engine(TIERED)
    now = 1_800_000_000.0
    first = run(e, K.START, "a", reserve(data(90)), now=now, service="DATA")
    second = run(e, K.START, "b", reserve(data(90)), now=now, service="DATA")
    assert first["r"].reserve_result.amount == D("0.90")
    assert second["r"].reserve_result.amount == D("0.90")  # still tier 1: nothing confirmed
    run(e, K.STOP, "a", confirm(data(90)), now=now + 1, service="DATA")
    done = run(e, K.STOP, "b", confirm(data(90)), now=now + 2, service="DATA")["r"]
    assert done.confirm_result.amount == D("0.50")         # 10 x 0.01 + 80 x 0.005


def test_tiers_split_in_whole_steps_per_tier() -> None:
    e = engine(TIERED.replace('quantity = "volume"', 'quantity = "volume"\nstep = 30'))
    now = 1_800_000_000.0
    r = run(e, K.START, "s", reserve(data(150)), now=now, service="DATA")
    # 100 in tier 1: 4 steps of 30 (rounded up) x 0.01; 50 in tier 2: 2 steps x 0.005
    assert r["r"].reserve_result.amount == D("0.050")


def test_inverse_rating_across_tiers_grants_what_fits() -> None:
    e = engine(TIERED, balance="1.10")
    r = run(e, K.START, "s", reserve(data(500), property_to_inverse="volume"), now=1.8e9,
            service="DATA")
    assert r["r"].granted_item.properties["volume"] == 120   # 1.00 + 20 x 0.005
    assert r["r"].reserve_result.amount == D("1.100")


# ------------------------------------------------------------------ per-subscriber plans

def test_plan_on_create_and_unknown_plan_refused() -> None:
    e = engine(plan="premium")
    assert e.get_subscriber("u").plan == "premium"
    r = run(e, K.START, "s", reserve(call(61)), now=at("2026-12-07 18:50"))
    assert r["r"].reserve_result.amount == D("0.061")      # 61 steps of 1 s x 0.001
    with pytest.raises(Refused) as info:
        e.create_subscriber("v", D(1), "EUR", None, "gold")
    assert info.value.code == ErrorCode.UNKNOWN_PLAN and "v" not in e.accounts
    with pytest.raises(Refused) as info:
        refills.set_plan(e, "u", "gold", None, 0.0)
    assert info.value.code == ErrorCode.UNKNOWN_PLAN
    assert e.get_subscriber("u").plan == "premium"


def test_set_plan_keeps_what_is_held_and_rates_the_rest_by_the_new_plan() -> None:
    e = engine(free_seconds=0)
    run(e, K.START, "s", reserve(call(600)), now=at("2026-12-07 18:50"))
    refills.set_plan(e, "u", "premium", at("2026-12-07 19:00"), at("2026-12-07 18:55"))
    assert e.get_subscriber("u").plan is None               # not yet
    update = run(e, K.UPDATE, "s", renew(call(600)), now=at("2026-12-07 19:05"))["r"]
    assert update.cancel_result.amount == D("1.00")        # what was held, as held
    assert update.confirm_result.amount == D("0.600")      # premium: 600 x 0.001
    assert update.reserve_result.amount == D("0.600")
    assert e.get_subscriber("u").plan == "premium"


# ------------------------------------------------------------------ refills

def test_refills_past_midnight_and_past_a_month_start() -> None:
    text = ISSUE_CATALOG + '''
[[plans.standard.allowances]]
counter = "free_sms"
units = 10
every = "day"

[[plans.standard.allowances]]
counter = "data_used"
units = 0
every = "month"
'''
    e = engine(text)
    e.accounts["u"].counters.update({"free_seconds": D(100), "free_sms": D(3),
                                     "data_used": D(5000)})
    now = at("2026-12-30 23:00")
    assert refills.due(e, now) == []                       # first decision: the mark
    refills.apply(e, now, [])
    assert refills.due(e, now + 1800) is None              # still the same day
    now = at("2026-12-31 00:10")
    starts = refills.due(e, now)
    assert starts == [("day", at("2026-12-31 00:00"))]
    refills.apply(e, now, starts or [])
    assert e.accounts["u"].counters == {"free_seconds": D(100), "free_sms": D(10),
                                        "data_used": D(5000)}
    now = at("2027-01-01 00:00")
    starts = refills.due(e, now)
    assert starts == [("day", now), ("month", now)]
    refills.apply(e, now, starts or [])
    assert e.accounts["u"].counters == {"free_seconds": D(3600), "free_sms": D(10),
                                        "data_used": D(0)}
    entries = [(t.reason, t.kind, dict(t.counters), t.rating) for t in e.transactions()]
    assert entries[-2:] == [
        (m.TxReason.REFILL, m.TxKind.TOP_UP, {"free_seconds": D(3500)}, "refill every month"),
        (m.TxReason.REFILL, m.TxKind.CONFIRM, {"data_used": D(5000)}, "refill every month")]
    assert e.transactions()[-1].time == dt.datetime(2026, 12, 31, 23, 0, tzinfo=dt.UTC)
    # PROTOCOL.md section 3: the currency's places on every amount sent ("0.00", not "0")
    assert {str(t.amount) for t in e.transactions() if t.reason is m.TxReason.REFILL} == \
        {"0.00"}


def test_a_refill_never_goes_below_what_reservations_hold() -> None:
    e = engine()
    run(e, K.START, "s", reserve(call(600)), now=at("2026-12-07 10:00"))
    e.accounts["u"].counters["free_seconds"] = D(600)
    e.refill_mark = at("2026-12-31 12:00")
    refills.apply(e, at("2027-01-01 00:01"), refills.due(e, at("2027-01-01 00:01")) or [])
    assert e.accounts["u"].counters["free_seconds"] == D(3600)
    assert e.accounts["u"].counters_reserved["free_seconds"] == D(600)
