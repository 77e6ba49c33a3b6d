"""Price plans and rating: exact decimals, whole steps, allowance counters first.

Rating a quantity q with an allowance counter holding c units (c available, not reserved):
    covered = min(c, q)                  units taken from the counter
    steps   = ceil((q - covered) / step) whole steps, rounded UP
    amount  = steps * price              exact, in the subscriber's currency
Inverse rating finds the largest quantity whose amount fits the available credit:
    covered + floor(available / price) * step, capped at the quantity asked for.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from protocol.money import CURRENCY_RULE, in_wire_range, is_currency, with_places

from .plans import DAY_MINUTES, DAYS, EVERY, Allowance, Period, Tier

ZERO: Final = Decimal(0)   # Final: a C static compiled, not a lookup on every use


class CatalogError(ValueError):
    """A catalog file that cannot be loaded; the message says where and why."""


@dataclass(frozen=True, slots=True)
class PricePlan:
    """How one chargeable item of one service is rated."""

    service_id: str
    item: str
    quantity: str                       # name of the numeric property that is the quantity
    step: Decimal                       # rating step, in the quantity's unit
    prices: dict[str, Decimal]          # currency -> price per step (a dict: looked up
                                        # per request, natively when compiled)
    allowance: str | None = None        # counter consumed before money, same unit
    rates: tuple[Period, ...] = ()      # periods by date (plans.py)
    tiers: tuple[Tier, ...] = ()        # graduated tiers (plans.py)
    usage_counter: str | None = None    # confirmed quantity accumulates here
    dated: bool = False                 # rates, tiers or a usage counter: not the fast path

    def __post_init__(self) -> None:
        where = f"{self.service_id}/{self.item}"
        if self.step <= 0:
            raise CatalogError(f"{where}: step must be > 0")
        if self.dated != bool(self.rates or self.tiers or self.usage_counter):
            raise CatalogError(f"{where}: 'dated' must say whether it has rates, tiers or "
                               "a usage counter")
        extra = [*(p.prices for p in self.rates), *(t.prices for t in self.tiers)]
        for what, value in [("step", self.step), *self.prices.items(),
                            *(kv for prices in extra for kv in prices.items())]:
            if value < 0:
                raise CatalogError(f"{where}: negative {what} price")
            if value and (value.adjusted() >= 12 or
                          value.normalize().as_tuple().exponent < -9):  # type: ignore[operator]
                raise CatalogError(f"{where}: {what} {value} must be below 1E12 with at "
                                   "most 9 fractional digits")


def rate(plan: PricePlan, price: Decimal, quantity: Decimal,
         counter_available: Decimal) -> tuple[Decimal, Decimal]:
    """Rate `quantity`: (units covered by the allowance counter, amount of money)."""
    if plan.allowance and counter_available > 0:
        covered = min(counter_available, quantity)
        uncovered = quantity - covered
    else:
        covered, uncovered = ZERO, quantity
    steps, rest = divmod(uncovered, plan.step)
    if rest:
        steps += 1
    return covered, steps * price


def affordable_quantity(plan: PricePlan, price: Decimal, wanted: Decimal,
                        counter_available: Decimal, credit: Decimal) -> Decimal:
    """The largest quantity <= `wanted` whose rating fits `credit`."""
    covered = min(counter_available, wanted) if plan.allowance and counter_available > 0 \
        else ZERO
    if price == 0:
        return wanted
    steps = (credit // price) if credit > 0 else ZERO
    return min(wanted, covered + steps * plan.step)


@dataclass(frozen=True, slots=True)
class SubscriberSeed:
    """A subscriber the catalog file creates at start-up (if it does not exist yet)."""

    user_id: str
    balance: Decimal
    currency: str = "EUR"
    counters: Mapping[str, Decimal] = field(default_factory=dict)
    plan: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """A named price plan: its items by (service, item) and its recurring allowances."""

    name: str
    items: dict[tuple[str, str], PricePlan]
    allowances: tuple[Allowance, ...] = ()


DEFAULT_PLAN: Final = "default"


class Catalog:
    """Every price plan, the default one's items by (service, item) in `plans`, plus the
    zone of rate and allowance periods and optional seed subscribers."""

    __slots__ = ("default_plan", "named", "plans", "source", "subscribers", "timezone",
                 "zone")

    def __init__(self, plans: dict[tuple[str, str], PricePlan],
                 subscribers: tuple[SubscriberSeed, ...] = (),
                 named: dict[str, Plan] | None = None, default_plan: str = DEFAULT_PLAN,
                 timezone: str = "UTC", source: dict[str, Any] | None = None) -> None:
        self.plans = plans          # a dict: looked up per request (the default plan's items)
        self.subscribers = subscribers
        self.named: dict[str, Plan] = named if named is not None else \
            {default_plan: Plan(default_plan, plans)}
        self.default_plan = default_plan
        self.timezone = timezone
        self.zone: dt.tzinfo = _zone(timezone, "timezone")
        #: the parsed file it was read from (kept with a snapshot), None when built in code
        self.source = source

    def plan(self, service_id: str, item: str) -> PricePlan | None:
        """The default plan's rating of `item` in `service_id`, or None."""
        return self.plans.get((service_id, item))

    def item_of(self, plan: str, service_id: str, item: str) -> PricePlan | None:
        """Plan `plan`'s rating of `item` in `service_id`, or None (unknown plan too)."""
        found = self.named.get(plan)
        return found.items.get((service_id, item)) if found is not None else None

    def allowances(self, plan: str | None) -> tuple[Allowance, ...]:
        """The recurring allowances of a plan (None: the default plan)."""
        found = self.named.get(self.default_plan if plan is None else plan)
        return found.allowances if found is not None else ()

    def same_prices(self, other: Catalog) -> bool:
        """Whether both price everything alike (seed subscribers aside)."""
        return (self.plans == other.plans and self.named == other.named
                and self.default_plan == other.default_plan
                and self.timezone == other.timezone)

    @classmethod
    def builtin(cls) -> Catalog:
        """SPEC section 8: DATA, VOICE and SMS in EUR."""
        eur = "EUR"
        plans = [
            PricePlan("DATA", "data", "volume", Decimal(1), {eur: Decimal("0.01")}, "free_data"),
            PricePlan("VOICE", "call", "duration", Decimal(60), {eur: Decimal("0.05")},
                      "free_seconds"),
            PricePlan("SMS", "sms", "count", Decimal(1), {eur: Decimal("0.10")}),
        ]
        return cls({(p.service_id, p.item): p for p in plans})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "catalog") -> Catalog:
        """Build a catalog from the parsed TOML structure (the server reads the file:
        `cc_server.catalogfile.load_catalog`). Top-level [services] are the plan named
        "default"; [plans.NAME] tables add named plans."""
        _only(data, {"currency", "services", "subscribers", "timezone", "default_plan",
                     "plans"}, source)
        default_currency = _currency(data.get("currency", "EUR"), f"{source}: currency")
        timezone = data.get("timezone", "UTC")
        _zone(timezone, f"{source}: timezone")
        named: dict[str, Plan] = {}
        if "services" in data:
            named[DEFAULT_PLAN] = Plan(DEFAULT_PLAN, _services(
                data["services"], default_currency, f"{source}: services"))
        plans = data.get("plans", {})
        if not isinstance(plans, Mapping):
            raise CatalogError(f"{source}: plans must be a table of [plans.NAME] tables")
        for name, spec in plans.items():
            where = f"{source}: plans.{name}"
            if name in named:
                raise CatalogError(f"{where}: plan {name!r} is also the top-level [services]")
            if not isinstance(spec, Mapping):
                raise CatalogError(f"{where}: must be a table")
            _only(spec, {"services", "allowances"}, where)
            named[name] = Plan(name, _services(spec.get("services"), default_currency,
                                               f"{where}.services"),
                               _allowances(spec.get("allowances", []), f"{where}.allowances"))
        if not named:
            raise CatalogError(f"{source}: [services] must define at least one service")
        default = data.get("default_plan", DEFAULT_PLAN if DEFAULT_PLAN in named or
                           len(named) > 1 else next(iter(named)))
        if default not in named:
            raise CatalogError(f"{source}: default_plan {default!r} is not a plan "
                               f"(plans: {sorted(named)})")
        seeds = tuple(_seed(s, default_currency, set(named), f"{source}: subscribers[{i}]")
                      for i, s in enumerate(data.get("subscribers", [])))
        return cls(dict(named[default].items), seeds, named, default, timezone, dict(data))


def _zone(name: Any, where: str) -> dt.tzinfo:
    if not isinstance(name, str) or not name:
        raise CatalogError(f"{where}: an IANA time zone name (\"Europe/Paris\"), "
                           f"not {name!r}")
    if name == "UTC":
        return dt.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CatalogError(f"{where}: unknown time zone {name!r} (an IANA name such as "
                           "\"Europe/Paris\")") from None


def _services(services: Any, currency: str, where: str) -> dict[tuple[str, str], PricePlan]:
    if not isinstance(services, Mapping) or not services:
        raise CatalogError(f"{where}: must define at least one service")
    plans: dict[tuple[str, str], PricePlan] = {}
    for service_id, service in services.items():
        here = f"{where}.{service_id}"
        if not isinstance(service, Mapping) or not isinstance(service.get("items"), Mapping):
            raise CatalogError(f"{here}: needs an items table ([...{service_id}.items])")
        _only(service, {"items"}, here)
        for item, spec in service["items"].items():
            plans[(service_id, item)] = _plan(service_id, item, spec, currency,
                                              f"{here}.items.{item}")
    return plans


def _allowances(specs: Any, where: str) -> tuple[Allowance, ...]:
    if not isinstance(specs, list):
        raise CatalogError(f"{where}: must be an array of tables ([[...allowances]])")
    found: list[Allowance] = []
    for i, spec in enumerate(specs):
        here = f"{where}[{i}]"
        if not isinstance(spec, Mapping):
            raise CatalogError(f"{here}: must be a table")
        _only(spec, {"counter", "units", "every"}, here)
        counter = spec.get("counter")
        if not isinstance(counter, str) or not counter:
            raise CatalogError(f"{here}.counter: must name a counter")
        units = _decimal(spec.get("units"), f"{here}.units")
        if units < 0:
            raise CatalogError(f"{here}.units: must be >= 0")
        every = spec.get("every")
        if every not in EVERY:
            raise CatalogError(f"{here}.every: one of {', '.join(EVERY)}, not {every!r}")
        if any(a.counter == counter for a in found):
            raise CatalogError(f"{here}.counter: {counter!r} has two allowances")
        found.append(Allowance(counter, units, every))
    return tuple(found)


_HHMM: Final = re.compile(r"([01][0-9]|2[0-4]):([0-5][0-9])")


def _minute(value: Any, where: str) -> int:
    match = _HHMM.fullmatch(value) if isinstance(value, str) else None
    minute = int(match.group(1)) * 60 + int(match.group(2)) if match else -1
    if match is None or minute > DAY_MINUTES:
        raise CatalogError(f"{where}: a time of day \"HH:MM\" (00:00 to 24:00), not "
                           f"{value!r}")
    return minute


def _days(value: Any, where: str) -> frozenset[int]:
    """"mon-fri", "sat,sun", or a list of days or ranges; ranges may wrap ("fri-mon")."""
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, list) or not parts:
        raise CatalogError(f"{where}: days of mon..sun as \"mon-fri\", \"sat,sun\" or a "
                           f"list, not {value!r}")
    days: set[int] = set()
    for part in parts:
        ends = part.strip().lower().split("-") if isinstance(part, str) else []
        if not 1 <= len(ends) <= 2 or any(e not in DAYS for e in ends):
            raise CatalogError(f"{where}: {part!r} is not a day (mon..sun) or a range of "
                               "days (mon-fri)")
        first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
        days.update((first + n) % 7 for n in range((last - first) % 7 + 1))
    return frozenset(days)


def _prices(spec: Mapping[str, Any], currency: str, where: str) -> dict[str, Decimal]:
    """`price` (in the item's currency) and/or `prices = {CUR = ...}` of a table."""
    prices: dict[str, Decimal] = {}
    if "price" in spec:   # a price of 1 EUR is kept as 1.00: amounts then show cents
        prices[currency] = with_places(_decimal(spec["price"], f"{where}.price"), currency)
    table = spec.get("prices") or {}
    if not isinstance(table, Mapping):
        raise CatalogError(f"{where}.prices: a table {{CUR = price, ...}}")
    for cur, price in table.items():
        prices[_currency(cur, f"{where}.prices")] = with_places(
            _decimal(price, f"{where}.prices.{cur}"), cur)
    return prices


def _periods(specs: Any, currency: str, currencies: set[str], where: str
             ) -> tuple[Period, ...]:
    if not isinstance(specs, list) or not specs:
        raise CatalogError(f"{where}: a non-empty array of periods {{ days, from, to, price }}")
    periods: list[Period] = []
    for i, spec in enumerate(specs):
        here = f"{where}[{i}]"
        if not isinstance(spec, Mapping):
            raise CatalogError(f"{here}: must be a table")
        _only(spec, {"days", "from", "to", "price", "prices"}, here)
        days = _days(spec.get("days", "mon-sun"), f"{here}.days")
        start = _minute(spec.get("from", "00:00"), f"{here}.from")
        end = _minute(spec.get("to", "24:00"), f"{here}.to")
        if start in (DAY_MINUTES, end):
            raise CatalogError(f"{here}: from {spec.get('from')!r} to {spec.get('to')!r} is "
                               "an empty period")
        prices = _prices(spec, currency, here)
        if set(prices) != currencies:
            raise CatalogError(f"{here}: must price the item's currencies {sorted(currencies)}"
                               f", not {sorted(prices)}")
        days_text = spec.get("days", "mon-sun")
        if isinstance(days_text, list):
            days_text = ",".join(str(d) for d in days_text)
        label = f"{days_text} {spec.get('from', '00:00')}-{spec.get('to', '24:00')}"
        periods.append(Period(days, start, end, prices, label,
                              f"period {len(periods) + 1} ({label})"))
    return tuple(periods)


def _tiers(specs: Any, currency: str, where: str) -> tuple[Tier, ...]:
    if not isinstance(specs, list) or not specs:
        raise CatalogError(f"{where}: a non-empty array of tiers {{ up_to, price }}")
    tiers: list[Tier] = []
    below = Decimal(0)
    for i, spec in enumerate(specs):
        here = f"{where}[{i}]"
        if not isinstance(spec, Mapping):
            raise CatalogError(f"{here}: must be a table")
        _only(spec, {"up_to", "price", "prices"}, here)
        up_to = _decimal(spec["up_to"], f"{here}.up_to") if "up_to" in spec else None
        if up_to is None and i != len(specs) - 1:
            raise CatalogError(f"{here}: only the last tier may leave out up_to")
        if up_to is not None and up_to <= below:
            raise CatalogError(f"{here}.up_to: must be above the tier before ({below})")
        prices = _prices(spec, currency, here)
        if not prices or (tiers and set(prices) != set(tiers[0].prices)):
            raise CatalogError(f"{here}: needs 'price' (or 'prices'), in the same currencies "
                               "as every tier")
        label = f"{below} to {up_to}" if up_to is not None else f"above {below}"
        tiers.append(Tier(up_to, prices, label))
        below = up_to if up_to is not None else below
    return tuple(tiers)


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise CatalogError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise CatalogError(f"{where}: write numbers as integers or quoted decimals "
                           f"(\"0.01\"), not {value!r}")
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise CatalogError(f"{where}: {value!r} is not a decimal number") from None
    if not result.is_finite():
        raise CatalogError(f"{where}: {value!r} is not finite")
    return result


def _currency(value: Any, where: str) -> str:
    if not is_currency(value):
        raise CatalogError(f"{where}: a currency is {CURRENCY_RULE}, not {value!r}")
    return value  # type: ignore[no-any-return]


def _plan(service_id: str, item: str, spec: Any, currency: str, where: str) -> PricePlan:
    if not isinstance(spec, Mapping):
        raise CatalogError(f"{where}: must be a table")
    _only(spec, {"quantity", "step", "price", "currency", "prices", "allowance", "rates",
                 "tiers", "usage_counter"}, where)
    if not isinstance(spec.get("quantity"), str):
        raise CatalogError(f"{where}: 'quantity' must name the quantity property")
    cur = _currency(spec.get("currency", currency), f"{where}.currency")
    prices = _prices(spec, cur, where)
    if "rates" in spec and "tiers" in spec:
        raise CatalogError(f"{where}: an item has 'rates' or 'tiers', not both")
    tiers = _tiers(spec["tiers"], cur, f"{where}.tiers") if "tiers" in spec else ()
    if tiers:
        if prices:
            raise CatalogError(f"{where}: a tiered item is priced by its tiers: no 'price'")
        prices = dict(tiers[0].prices)
    if not prices:
        raise CatalogError(f"{where}: needs 'price' (or a 'prices' table by currency)")
    rates = _periods(spec["rates"], cur, set(prices), f"{where}.rates") if "rates" in spec \
        else ()
    names = {}
    for key in ("allowance", "usage_counter"):
        value = spec.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise CatalogError(f"{where}.{key}: must name a counter")
        names[key] = value
    if names["allowance"] is not None and names["allowance"] == names["usage_counter"]:
        raise CatalogError(f"{where}: the allowance and the usage counter must differ")
    try:
        return PricePlan(service_id, item, spec["quantity"],
                         _decimal(spec.get("step", 1), f"{where}.step"), prices,
                         names["allowance"], rates, tiers, names["usage_counter"],
                         bool(rates or tiers or names["usage_counter"]))
    except CatalogError as exc:
        raise CatalogError(f"{where}: {exc}") from None


def _seed(spec: Any, currency: str, plans: set[str], where: str) -> SubscriberSeed:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("user_id"), str):
        raise CatalogError(f"{where}: needs a user_id")
    _only(spec, {"user_id", "balance", "currency", "counters", "plan"}, where)
    plan = spec.get("plan")
    if plan is not None and plan not in plans:
        raise CatalogError(f"{where}.plan: {plan!r} is not a plan (plans: {sorted(plans)})")
    counters = {name: _decimal(v, f"{where}.counters.{name}")
                for name, v in (spec.get("counters") or {}).items()}
    if _decimal(spec.get("balance", 0), where) < 0:
        raise CatalogError(f"{where}.balance: an opening balance must be >= 0")
    for what, value in [("balance", _decimal(spec.get("balance", 0), where)),
                        *((f"counters.{n}", v) for n, v in counters.items())]:
        if not in_wire_range(value):
            raise CatalogError(f"{where}.{what}: {value} is outside the wire's range (below "
                               "1E25, at most 18 fractional digits)")
    return SubscriberSeed(spec["user_id"], _decimal(spec.get("balance", 0), f"{where}.balance"),
                          _currency(spec.get("currency", currency), f"{where}.currency"),
                          counters, plan)
