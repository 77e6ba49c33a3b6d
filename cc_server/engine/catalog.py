"""Price plans and rating: exact decimals, whole steps, allowance counters first.

Rating a quantity q with an allowance counter holding c units (c available, not reserved):
    covered = min(c, q)                  units taken from the counter
    steps   = ceil((q - covered) / step) whole steps, rounded UP
    amount  = steps * price              exact, in the subscriber's currency
Inverse rating finds the largest quantity whose amount fits the available credit:
    covered + floor(available / price) * step, capped at the quantity asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from protocol.money import CURRENCY_RULE, in_wire_range, is_currency, with_places

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

    def __post_init__(self) -> None:
        where = f"{self.service_id}/{self.item}"
        if self.step <= 0:
            raise CatalogError(f"{where}: step must be > 0")
        for what, value in [("step", self.step), *self.prices.items()]:
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


@dataclass(frozen=True, slots=True)
class Catalog:
    """Every price plan by (service, item), plus optional seed subscribers."""

    plans: dict[tuple[str, str], PricePlan]   # a dict: looked up per request
    subscribers: tuple[SubscriberSeed, ...] = ()

    def plan(self, service_id: str, item: str) -> PricePlan | None:
        """The plan for `item` in `service_id`, or None."""
        return self.plans.get((service_id, item))

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
        `cc_server.catalogfile.load_catalog`)."""
        _only(data, {"currency", "services", "subscribers"}, source)
        default_currency = _currency(data.get("currency", "EUR"), f"{source}: currency")
        plans: dict[tuple[str, str], PricePlan] = {}
        services = data.get("services", {})
        if not isinstance(services, Mapping) or not services:
            raise CatalogError(f"{source}: [services] must define at least one service")
        for service_id, service in services.items():
            where = f"{source}: services.{service_id}"
            if not isinstance(service, Mapping) or not isinstance(service.get("items"), Mapping):
                raise CatalogError(f"{where}: needs an [services.{service_id}.items] table")
            _only(service, {"items"}, where)
            for item, spec in service["items"].items():
                plans[(service_id, item)] = _plan(service_id, item, spec, default_currency,
                                                  f"{where}.items.{item}")
        seeds = tuple(_seed(s, default_currency, f"{source}: subscribers[{i}]")
                      for i, s in enumerate(data.get("subscribers", [])))
        return cls(plans, seeds)


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
    _only(spec, {"quantity", "step", "price", "currency", "prices", "allowance"}, where)
    if not isinstance(spec.get("quantity"), str):
        raise CatalogError(f"{where}: 'quantity' must name the quantity property")
    prices: dict[str, Decimal] = {}
    if "price" in spec:   # a price of 1 EUR is kept as 1.00: amounts then show cents
        cur = _currency(spec.get("currency", currency), f"{where}.currency")
        prices[cur] = with_places(_decimal(spec["price"], f"{where}.price"), cur)
    for cur, price in (spec.get("prices") or {}).items():
        prices[_currency(cur, f"{where}.prices")] = with_places(
            _decimal(price, f"{where}.prices.{cur}"), cur)
    if not prices:
        raise CatalogError(f"{where}: needs 'price' (or a 'prices' table by currency)")
    allowance = spec.get("allowance")
    if allowance is not None and not isinstance(allowance, str):
        raise CatalogError(f"{where}: 'allowance' must name a counter")
    try:
        return PricePlan(service_id, item, spec["quantity"],
                         _decimal(spec.get("step", 1), f"{where}.step"), prices, allowance)
    except CatalogError as exc:
        raise CatalogError(f"{where}: {exc}") from None


def _seed(spec: Any, currency: str, where: str) -> SubscriberSeed:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("user_id"), str):
        raise CatalogError(f"{where}: needs a user_id")
    _only(spec, {"user_id", "balance", "currency", "counters"}, where)
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
                          counters)
