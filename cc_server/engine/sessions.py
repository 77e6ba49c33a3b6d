"""Sessions, charging sessions, and the sub-request rules of SPEC section 3.

Every function here validates everything it can before it changes anything, so a refused
sub-request (`Refused`) leaves no trace. The one deliberate exception is confirm-and-reserve:
its release (1) and debit (2) stand even when the new reservation (3) finds no credit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from protocol import messages as m
from protocol.errors import ErrorCode
from protocol.money import WIRE_BOUND, zero

from .accounts import ZERO, Account, out_of_range
from .caches import EngineCaches
from .catalog import PricePlan, affordable_quantity, rate
from .errors import Refused
from .expiry import Queued
from .plans import period_price, tiered_affordable, tiered_amount

if TYPE_CHECKING:   # the engine imports this module; typed as the class, compiled code
    from . import Engine  # reads its fields directly (a Protocol: a lookup each)

# Final: compiled, each is a C static; otherwise a dict lookup (and for m.X.Y two
# attribute lookups) on every use.
NO_TX: Final = m.ResultType.NO_TRANSACTIONS
_new_tuple: Final = tuple.__new__
_OUTCOME: Final = m.Outcome
_RATING: Final = m.RatingResult
_ITEM: Final = m.ChargeableItem
RELEASE: Final = m.TxKind.RELEASE
CONFIRM: Final = m.TxKind.CONFIRM
RESERVE: Final = m.TxKind.RESERVE
TOP_UP: Final = m.TxKind.TOP_UP
CANCELED: Final = m.Resolution.CANCELED
CONFIRMED: Final = m.Resolution.CONFIRMED


def _outcome(rid: str, error: str | None, message: str | None,
             cancel: m.RatingResult | None, confirm: m.RatingResult | None,
             reserve: m.RatingResult | None, granted: m.ChargeableItem | None,
             expires: dt.datetime | None, below_zero: bool) -> m.Outcome:
    """An Outcome, positionally (keyword construction of a NamedTuple runs Python code)."""
    return _new_tuple(_OUTCOME, (rid, error, message, cancel, confirm, reserve, granted,
                                  expires, below_zero))


def _item(name: str | None, properties: Mapping[str, m.PropertyValue]) -> m.ChargeableItem:
    """An item merged from already validated ones: no need to validate it again."""
    return _new_tuple(_ITEM, (name, properties))
# Quantities (and catalog prices and steps, see catalog.py) are bounded so that every
# amount stays far inside the engine's 80-digit exact arithmetic: no rating can trap
# half-way through a sub-request.
MAX_QUANTITY_DIGITS: Final = 18
MAX_FRACTION_DIGITS: Final = 9
_MAX_INT_QUANTITY: Final = 10 ** MAX_QUANTITY_DIGITS
_LOWEST: Final = -WIRE_BOUND     # a balance or available credit must stay above it


class Session:
    """A multiservice session: one subscriber, one service, many charging sessions."""

    __slots__ = ("_more", "_one", "alive", "cleanup_result_type", "created_at",
                 "external_data", "filter_transaction", "listener_id", "result_type",
                 "service_id", "session_id", "user_id")

    def __init__(self, session_id: str, user_id: str, service_id: str, created_at: float,
                 listener_id: int | None = None, external_data: bytes | None = None,
                 result_type: m.ResultType = m.ResultType.ALL_TRANSACTIONS,
                 cleanup_result_type: m.ResultType = m.ResultType.ALL_TRANSACTIONS,
                 filter_transaction: bool = False) -> None:
        self.session_id = session_id
        self.user_id = user_id
        self.service_id = service_id
        self.created_at = created_at
        self.listener_id = listener_id
        self.external_data = external_data
        self.result_type = result_type
        self.cleanup_result_type = cleanup_result_type
        self.filter_transaction = filter_transaction
        # Its charging sessions: the only one held as is, a dict (reservation id -> charging
        # session, in order of creation) from the second on. Most of a million live
        # sessions have one, and a dict would cost each ~190 bytes more.
        self._one: ChargingSession | None = None
        self._more: dict[str, ChargingSession] | None = None
        self.alive = True

    def charging_session(self, reservation_id: str) -> ChargingSession | None:
        """Its charging session of that reservation id, open or ended, or None."""
        one = self._one
        if one is not None:
            return one if one.reservation_id == reservation_id else None
        more = self._more
        return more.get(reservation_id) if more is not None else None

    def add_charging_session(self, cs: ChargingSession) -> None:
        """Add a charging session whose reservation id is new to this session."""
        one = self._one
        if one is None and self._more is None:
            self._one = cs
            return
        if one is not None:
            self._more = {one.reservation_id: one}
            self._one = None
        assert self._more is not None
        self._more[cs.reservation_id] = cs

    def charging_sessions(self) -> list[ChargingSession]:
        """Its charging sessions in order of creation (a copy: safe to change it while
        going through them)."""
        if self._one is not None:
            return [self._one]
        return list(self._more.values()) if self._more is not None else []

    def has_charging_sessions(self) -> bool:
        """Whether any charging session was ever added (and not cleared)."""
        return self._one is not None or self._more is not None

    def clear_charging_sessions(self) -> None:
        """Forget them all (breaks the session <-> charging session reference cycle)."""
        self._one = self._more = None

    def settled(self, now: float) -> bool:
        """True when no charging session is open and the latest expiry has passed."""
        charging = self.charging_sessions()
        return not any(cs.open for cs in charging) and \
            max((cs.expires_at for cs in charging), default=now) <= now


class ChargingSession(Queued):
    """One reservation id of a session: what it holds, until when, and how it ends.
    Its deadline and place in the expiry queue are the fields of `Queued`."""

    __slots__ = ("counter", "held", "inverse", "item", "open", "reduced", "reservation_id",
                 "resolution", "session", "starved", "ttl", "units")

    def __init__(self, session: Session, reservation_id: str, item: m.ChargeableItem,
                 ttl: float, expires_at: float, resolution: m.Resolution,
                 inverse: str | None) -> None:
        super().__init__(expires_at)
        self.session = session
        self.reservation_id = reservation_id
        self.item = item                  # the stored reservation item (granted, if reduced)
        self.ttl = ttl
        self.resolution = resolution
        self.inverse = inverse
        self.held = ZERO                  # money held
        self.counter: str | None = None   # allowance counter the units are held on
        self.units = ZERO                 # counter units held
        self.open = True
        self.starved = False              # open, nothing held: its new reservation failed
        self.reduced = False              # granted less than asked by inverse rating

    @property
    def alive(self) -> bool:
        """Whether its session still exists."""
        return self.session.alive


class Tally:
    """Counts the engine keeps current instead of scanning for them."""

    __slots__ = ("open_reservations",)

    def __init__(self) -> None:
        self.open_reservations = 0


class Op:
    """One container (or clean-up) being applied: to whom, when, and how to report it."""

    __slots__ = ("account", "caches", "catalog", "expiry", "filter", "journal", "now",
                 "now_dt", "reason", "result_type", "session", "tally")

    def __init__(self, engine: Engine, account: Account, session: Session, now: float,
                 reason: m.TxReason, result_type: m.ResultType,
                 filter_transaction: bool) -> None:
        self.account = account
        self.session = session
        self.now = now
        self.caches = caches = engine.caches
        self.now_dt = caches.datetime(now)
        self.catalog = engine.catalog
        self.journal = engine.journal
        self.expiry = engine.expiry
        self.tally = engine.tally
        self.reason = reason
        self.result_type = result_type
        self.filter = filter_transaction


# ------------------------------------------------------------------------ validation

def consolidate(stored: m.ChargeableItem, given: m.ChargeableItem | None) -> m.ChargeableItem:
    """Overlay a None or partial item on the stored one, property by property."""
    if given is None:
        return stored
    # unpacked, not by field name: compiled, an interpreted NamedTuple subclass's fields
    # by name are attribute lookups, unpacking reads the tuple
    name, props = given
    stored_name, stored_props = stored
    if not props:
        return stored if name in (None, stored_name) else _item(name, stored_props)
    return _item(name or stored_name, {**stored_props, **props})


def _quantity(item: m.ChargeableItem, plan: PricePlan, caches: EngineCaches) -> Decimal:
    _, props = item       # unpacked: see consolidate
    value = props.get(plan.quantity)
    if type(value) is int:
        if 0 <= value < _MAX_INT_QUANTITY:     # the usual case: in range by construction
            return caches.quantity(value)
        quantity = Decimal(value)
    elif type(value) is Decimal:
        quantity = value
    elif value is None:
        raise Refused(ErrorCode.INVALID_REQUEST,
                      f"item {item.name!r} needs its quantity property {plan.quantity!r}")
    else:
        raise Refused(ErrorCode.INVALID_REQUEST, f"quantity property {plan.quantity!r} must be "
                      f"an int or a Decimal, not {type(value).__name__}")
    if quantity < 0:
        raise Refused(ErrorCode.INVALID_REQUEST, f"{plan.quantity} must not be negative")
    if quantity and (quantity.adjusted() >= MAX_QUANTITY_DIGITS or
                     quantity.normalize().as_tuple().exponent < -MAX_FRACTION_DIGITS):  # type: ignore[operator]
        raise Refused(ErrorCode.INVALID_REQUEST, f"{plan.quantity} must be below "
                      f"1E{MAX_QUANTITY_DIGITS} with at most {MAX_FRACTION_DIGITS} "
                      "fractional digits")
    return quantity


def priced(op: Op, item: m.ChargeableItem) -> tuple[PricePlan, Decimal, Decimal]:
    """(plan, price per step, quantity) of an item, or `Refused`."""
    name, _ = item        # unpacked: see consolidate
    if name is None:
        raise Refused(ErrorCode.INVALID_REQUEST, "the chargeable item has no name")
    service = op.session.service_id
    plan_name = op.account.plan_at(op.now) if op.account.plan_next is not None \
        else op.account.plan
    plan = op.catalog.plan(service, name) if plan_name is None else \
        op.catalog.item_of(plan_name, service, name)
    if plan is None:
        raise Refused(ErrorCode.UNKNOWN_CHARGEABLE_ITEM,
                      f"service {service!r} has no chargeable item {item.name!r}" +
                      ("" if plan_name is None else f" in plan {plan_name!r}"))
    price = plan.prices.get(op.account.currency)
    if price is None:
        raise Refused(ErrorCode.UNKNOWN_CHARGEABLE_ITEM,
                      f"item {item.name!r} has no price in {op.account.currency}")
    return plan, price, _quantity(item, plan, op.caches)


def _check_inverse(inverse: str | None, plan: PricePlan) -> None:
    if inverse is not None and inverse != plan.quantity:
        raise Refused(ErrorCode.INVALID_REQUEST, f"property_to_inverse must name the quantity "
                      f"property {plan.quantity!r}, not {inverse!r}")


def _open(op: Op, reservation_id: str) -> ChargingSession:
    cs = op.session.charging_session(reservation_id)
    if cs is None or not cs.open:
        raise Refused(ErrorCode.RESERVATION_NOT_FOUND,
                      f"no open reservation {reservation_id!r} in this session")
    return cs


# ------------------------------------------------------------------------ money moves

def _result(op: Op, amount: Decimal, tx: m.Transaction) -> m.RatingResult:
    if op.result_type is NO_TX or (op.filter and not tx.amount):
        return _new_tuple(_RATING, (amount, op.account.currency, ()))
    return _new_tuple(_RATING, (amount, op.account.currency, (tx,)))


def _journal(op: Op, cs: ChargingSession, kind: m.TxKind, amount: Decimal,
             counter: str | None, units: Decimal, rating: str | None = None) -> m.Transaction:
    return op.journal.record(op.now_dt, op.account.user_id, op.session.session_id,
                             cs.reservation_id, kind, op.reason, amount,
                             op.account.currency, counter, units, rating)


# ------------------------------------------------------------------------ dated items

def reserved_at(cs: ChargingSession) -> float:
    """The date its reservation was rated at (made or last extended): its expiry minus
    its TTL, to the millisecond as every server time is."""
    return round(cs.expires_at - cs.ttl, 3)


def rate_dated(op: Op, plan: PricePlan, quantity: Decimal, counter_available: Decimal,
               when: float) -> tuple[Decimal, Decimal, str]:
    """Rate an item with periods, tiers or a usage counter at the date `when`:
    (allowance units covered, amount, which allowance, period or tiers priced it)."""
    covered = min(counter_available, quantity) if plan.allowance and counter_available > 0 \
        else ZERO
    uncovered = quantity - covered
    currency = op.account.currency
    if plan.tiers:
        usage = op.account.counters.get(plan.usage_counter, ZERO) if plan.usage_counter \
            else ZERO
        amount, note = tiered_amount(plan.tiers, plan.step, currency, usage + covered,
                                     uncovered)
        amount += zero(currency)
    else:
        price, note = period_price(plan.rates, plan.prices.get(currency), currency,
                                   op.caches.local(when, op.catalog.zone))
        assert price is not None     # periods price the item's currencies (catalog.py)
        steps, rest = divmod(uncovered, plan.step)
        if rest:
            steps += 1
        amount = steps * price
        note = f"{note}: {steps} x {price}"
    if covered:
        note = f"allowance {plan.allowance}: {covered}; {note}"
    return covered, amount, note


def affordable_dated(op: Op, plan: PricePlan, wanted: Decimal, counter_available: Decimal,
                     credit: Decimal, when: float) -> Decimal:
    """The largest quantity <= `wanted` whose `rate_dated` at `when` fits `credit`."""
    covered = min(counter_available, wanted) if plan.allowance and counter_available > 0 \
        else ZERO
    currency = op.account.currency
    if plan.tiers:
        usage = op.account.counters.get(plan.usage_counter, ZERO) if plan.usage_counter \
            else ZERO
        return covered + tiered_affordable(plan.tiers, plan.step, currency, usage + covered,
                                           wanted - covered, credit)
    price, _ = period_price(plan.rates, plan.prices.get(currency), currency,
                            op.caches.local(when, op.catalog.zone))
    assert price is not None
    if price == 0:
        return wanted
    steps = (credit // price) if credit > 0 else ZERO
    return min(wanted, covered + steps * plan.step)


def count_usage(op: Op, cs: ChargingSession, plan: PricePlan, quantity: Decimal) -> None:
    """Add a confirmed quantity to the item's usage counter (journaled: a top_up of 0
    moving the units, so counters stay recomputable from the journal)."""
    counter = plan.usage_counter
    if counter is None or not quantity:
        return
    account = op.account
    account.counters[counter] = account.counters.get(counter, ZERO) + quantity
    _journal(op, cs, TOP_UP, zero(account.currency), counter, quantity, "usage")


def release(op: Op, cs: ChargingSession) -> m.RatingResult:
    """Give back what `cs` holds (the re-rated reservation: result (1))."""
    amount, counter, units = cs.held, cs.counter, cs.units
    op.account.release(amount, counter, units)
    cs.held, cs.units = zero(op.account.currency), ZERO   # "0.00" in EUR, not "0"
    return _result(op, amount, _journal(op, cs, RELEASE, amount, counter, units))


def debit_nothing(op: Op, cs: ChargingSession) -> m.RatingResult:
    """The confirmation of nothing used (result (2) of a starved reservation confirmed
    without an item): zero, journaled like any confirmation."""
    amount = zero(op.account.currency)
    return _result(op, amount, _journal(op, cs, CONFIRM, amount, None, ZERO))


def charge(op: Op, cs: ChargingSession, plan: PricePlan, price: Decimal,
           quantity: Decimal) -> tuple[Decimal, Decimal, str | None]:
    """(units, amount, note): the rating of a consumed quantity, as `debit` charges it once
    `cs` is released (its counter units count as available). A dated item is rated at the
    date of the reservation confirmed (`reserved_at`), and `note` says which allowance,
    period or tiers priced it (None for a flat item). Never fails for credit, but
    `Refused` (nothing changed) when the amount or the available credit it leaves would
    be outside the wire's range."""
    account = op.account
    counter_available = account.counter_available(plan.allowance)
    if cs.units and cs.counter == plan.allowance:
        counter_available += cs.units
    note: str | None = None
    if plan.dated:
        units, amount, note = rate_dated(op, plan, quantity, counter_available,
                                         reserved_at(cs))
    else:
        units, amount = rate(plan, price, quantity, counter_available)
    # available afterwards (<= the balance afterwards, as reserved >= 0)
    left = account.balance - account.reserved + cs.held - amount
    if amount >= WIRE_BOUND or left <= _LOWEST:
        raise out_of_range("this charge" if amount >= WIRE_BOUND
                           else f"the available credit of {account.user_id!r}",
                           amount if amount >= WIRE_BOUND else left)
    return units, amount, note


def debit(op: Op, cs: ChargingSession, plan: PricePlan, units: Decimal, amount: Decimal,
          note: str | None, quantity: Decimal) -> m.RatingResult:
    """Charge what `charge` rated in full (result (2)); a dated item's confirmed
    `quantity` also counts toward its usage counter."""
    op.account.debit(amount, plan.allowance, units)
    if note is None:
        return _result(op, amount, _journal(op, cs, CONFIRM, amount, plan.allowance, units))
    tx = _journal(op, cs, CONFIRM, amount, plan.allowance, units, note)
    count_usage(op, cs, plan, quantity)
    return _result(op, amount, tx)


def hold(op: Op, cs: ChargingSession, item: m.ChargeableItem, plan: PricePlan, price: Decimal,
         quantity: Decimal, inverse: str | None) -> m.RatingResult:
    """Rate and reserve `item` for `cs` (result (3)), reduced by inverse rating if allowed.

    Raises `Refused(CREDIT_LIMIT_REACHED)` before changing anything when nothing fits.
    """
    account = op.account
    counter_available = account.counter_available(plan.allowance)
    note: str | None = None
    if plan.dated:     # rated at this container's date
        units, amount, note = rate_dated(op, plan, quantity, counter_available, op.now)
    else:
        units, amount = rate(plan, price, quantity, counter_available)
    available = account.balance - account.reserved
    reduced = False
    if amount and amount > available:
        if inverse is None:
            raise Refused(ErrorCode.CREDIT_LIMIT_REACHED, f"{amount} {account.currency} "
                          f"needed, {available} available")
        if plan.dated:
            granted = affordable_dated(op, plan, quantity, counter_available, available,
                                       op.now)
        else:
            granted = affordable_quantity(plan, price, quantity, counter_available, available)
        if granted <= 0:
            raise Refused(ErrorCode.CREDIT_LIMIT_REACHED, f"not even one {plan.step} "
                          f"{plan.quantity} step is affordable ({available} available)")
        if plan.dated:
            units, amount, note = rate_dated(op, plan, granted, counter_available, op.now)
        else:
            units, amount = rate(plan, price, granted, counter_available)
        original = item.properties[plan.quantity]
        value = int(granted) if type(original) is int and granted == granted.to_integral() \
            else granted
        item = _item(item.name, {**item.properties, plan.quantity: value})
        reduced = True
    amount = op.caches.amount(amount)
    account.hold(amount, plan.allowance, units)
    cs.item, cs.held, cs.counter, cs.units = op.caches.item(item), amount, plan.allowance, units
    cs.starved, cs.reduced = False, reduced
    if reduced:
        account.hungry[cs] = None
    elif cs in account.hungry:     # `in` and `del` compile to dict calls, `pop` to a lookup
        del account.hungry[cs]
    return _result(op, amount, _journal(op, cs, RESERVE, amount, plan.allowance, units, note))


def end(op: Op, cs: ChargingSession) -> None:
    """The charging session is over (confirmed, cancelled, cleaned up)."""
    cs.open = False
    cs.starved = cs.reduced = False
    op.tally.open_reservations -= 1
    if cs in op.account.hungry:   # see hold
        del op.account.hungry[cs]


def _expires(op: Op, cs: ChargingSession) -> dt.datetime:
    return op.caches.expiry(cs.expires_at)


# ------------------------------------------------------------------------ sub-requests

def reserve(op: Op, sub: m.SubRequest) -> m.Outcome:
    """prepare_reserve: open a new charging session holding the rated item."""
    rid = sub.reservation_id
    if op.session.charging_session(rid) is not None:
        raise Refused(ErrorCode.DUPLICATE_RESERVATION,
                      f"reservation {rid!r} already exists in this session")
    ttl = sub.ttl
    if ttl is None or ttl <= 0:
        raise Refused(ErrorCode.INVALID_REQUEST, f"a reservation needs a ttl > 0 (got {ttl})")
    if sub.item is None:
        raise Refused(ErrorCode.INVALID_REQUEST, "prepare_reserve needs a chargeable item")
    plan, price, quantity = priced(op, sub.item)
    _check_inverse(sub.property_to_inverse, plan)
    cs = ChargingSession(op.session, op.caches.value(rid), sub.item, op.caches.ttl(ttl),
                         op.now + ttl, sub.default_resolution or CANCELED,
                         sub.property_to_inverse)
    result = hold(op, cs, sub.item, plan, price, quantity, cs.inverse)
    op.session.add_charging_session(cs)
    op.expiry.push(cs)
    op.tally.open_reservations += 1
    return _outcome(rid, None, None, None, None, result, cs.item, _expires(op, cs), False)


def confirm(op: Op, sub: m.SubRequest) -> m.Outcome:
    """prepare_confirm: release the reservation (1), debit the consolidated item (2).
    A starved reservation confirmed without an item confirms zero: it held nothing."""
    cs = _open(op, sub.reservation_id)
    if cs.starved and sub.item is None:
        cancel_result = release(op, cs)
        confirm_result = debit_nothing(op, cs)
    else:
        plan, price, quantity = priced(op, consolidate(cs.item, sub.item))
        units, amount, note = charge(op, cs, plan, price, quantity)
        cancel_result = release(op, cs)
        confirm_result = debit(op, cs, plan, units, amount, note, quantity)
    end(op, cs)
    return _outcome(cs.reservation_id, None, None, cancel_result, confirm_result, None, None,
                    None, op.account.balance < 0)


def cancel(op: Op, sub: m.SubRequest) -> m.Outcome:
    """prepare_cancel: release the reservation; the charging session ends."""
    cs = _open(op, sub.reservation_id)
    cancel_result = release(op, cs)
    end(op, cs)
    return _outcome(cs.reservation_id, None, None, cancel_result, None, None, None, None, False)


def confirm_and_reserve(op: Op, sub: m.SubRequest) -> m.Outcome:
    """prepare_confirm_and_reserve: the three rating results of SAP CC. The confirmation
    of a starved reservation without an item is zero, as in `confirm`."""
    cs = _open(op, sub.reservation_id)
    nothing_used = cs.starved and sub.item is None
    next_item = consolidate(cs.item, sub.next_item)
    if not nothing_used:
        c_plan, c_price, c_quantity = priced(op, consolidate(cs.item, sub.item))
    n_plan, n_price, n_quantity = priced(op, next_item)
    _check_inverse(sub.property_to_inverse, n_plan)
    inverse = sub.property_to_inverse or (cs.inverse if cs.inverse == n_plan.quantity else None)
    ttl = sub.ttl
    if ttl == 0:
        raise Refused(ErrorCode.INVALID_REQUEST, "ttl 0 is invalid (> 0 sets, < 0 keeps)")
    if ttl is None or ttl < 0:
        ttl = cs.ttl
    if not nothing_used:
        c_units, c_amount, c_note = charge(op, cs, c_plan, c_price, c_quantity)
    cancel_result = release(op, cs)
    confirm_result = debit_nothing(op, cs) if nothing_used else \
        debit(op, cs, c_plan, c_units, c_amount, c_note, c_quantity)
    cs.ttl, cs.expires_at, cs.inverse = op.caches.ttl(ttl), op.now + ttl, inverse
    cs.resolution = sub.default_resolution or cs.resolution
    op.expiry.push(cs)
    try:
        reserve_result = hold(op, cs, next_item, n_plan, n_price, n_quantity, inverse)
    except Refused as exc:   # starved: open with nothing held until its TTL
        cs.item, cs.starved, cs.reduced = next_item, True, False
        op.account.hungry[cs] = None
        return _outcome(cs.reservation_id, exc.code, exc.message, cancel_result,
                        confirm_result, None, None, _expires(op, cs), op.account.balance < 0)
    return _outcome(cs.reservation_id, None, None, cancel_result, confirm_result,
                    reserve_result, cs.item, _expires(op, cs), op.account.balance < 0)


def clean_up(op: Op, cs: ChargingSession, resolution: m.Resolution | None = None) -> m.Outcome:
    """Apply the default (or the given) resolution to an open charging session."""
    amount, counter, units = cs.held, cs.counter, cs.units
    cancel_result = release(op, cs)
    confirm_result = None
    if (resolution or cs.resolution) is CONFIRMED:
        op.account.debit(amount, counter, units)
        confirm_result = _result(op, amount,
                                 _journal(op, cs, CONFIRM, amount, counter, units))
        _count_held(op, cs)
    end(op, cs)
    return _outcome(cs.reservation_id, None, None, cancel_result, confirm_result, None, None,
                    None, confirm_result is not None and op.account.balance < 0)


def _count_held(op: Op, cs: ChargingSession) -> None:
    """A CONFIRMED clean-up used what was held: its quantity goes to the usage counter of
    the item (when the catalog still has it and it has one)."""
    name, props = cs.item
    if name is None or cs.starved:
        return
    plan_name = op.account.plan
    plan = op.catalog.plan(op.session.service_id, name) if plan_name is None else \
        op.catalog.item_of(plan_name, op.session.service_id, name)
    if plan is None or plan.usage_counter is None:
        return
    value = props.get(plan.quantity)
    if type(value) is int or type(value) is Decimal:
        count_usage(op, cs, plan, Decimal(value))


A_RESERVE: Final = m.Action.RESERVE
A_CONFIRM: Final = m.Action.CONFIRM
A_CANCEL: Final = m.Action.CANCEL
A_CONFIRM_AND_RESERVE: Final = m.Action.CONFIRM_AND_RESERVE


def apply(op: Op, sub: m.SubRequest) -> m.Outcome:
    """Apply one sub-request: the rule of its action (anything but an `m.Action` member,
    which the codec never lets through, raises: an internal error, not a refusal)."""
    action = sub.action
    if action is A_RESERVE:
        return reserve(op, sub)
    if action is A_CONFIRM:
        return confirm(op, sub)
    if action is A_CANCEL:
        return cancel(op, sub)
    if action is A_CONFIRM_AND_RESERVE:
        return confirm_and_reserve(op, sub)
    raise ValueError(f"unknown sub-request action {action!r}")


def failed(rid: str, exc: Refused) -> m.Outcome:
    """The outcome of a refused sub-request."""
    return _outcome(rid, exc.code, exc.message, None, None, None, None, None, False)
