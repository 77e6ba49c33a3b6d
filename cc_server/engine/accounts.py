"""Subscribers: balance, reserved, available, and allowance counters.

Invariants (checked by the tests after every step):
    available == balance - reserved
    reserved  == sum of what live reservations hold
    counters_reserved[c] == sum of counter units live reservations hold
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from protocol import messages as m
from protocol.errors import ErrorCode
from protocol.money import EXACT, in_wire_range, plain, with_places, zero

from .errors import Refused

if TYPE_CHECKING:
    from .sessions import ChargingSession

ZERO: Final = Decimal(0)   # Final: a C static compiled, not a lookup on every use


OUT_OF_RANGE = ("outside the wire's range (amounts and units are below 10^25 in absolute "
                "value, with at most 18 fractional digits)")


def out_of_range(what: str, value: Decimal) -> Refused:
    """The refusal of an operation whose result the wire could not carry (nothing applied)."""
    return Refused(ErrorCode.INVALID_REQUEST, f"{what} would be {plain(value)}, {OUT_OF_RANGE}")


class Account:
    """One subscriber's money and counters."""

    __slots__ = ("balance", "counters", "counters_reserved", "currency", "hungry", "plan",
                 "plan_next", "reserved", "sessions", "user_id")

    def __init__(self, user_id: str, balance: Decimal, currency: str,
                 counters: Mapping[str, Decimal] | None = None,
                 plan: str | None = None) -> None:
        self.user_id = user_id
        self.currency = currency
        self.balance = with_places(balance, currency)   # "1E+3" EUR is kept as 1000.00
        self.reserved = zero(currency)
        self.counters: dict[str, Decimal] = dict(counters or {})
        self.counters_reserved: dict[str, Decimal] = {}
        #: ids of this user's live sessions (a dict: a third of a set's memory per id)
        self.sessions: dict[str, None] = {}
        #: starved or reduced charging sessions (a dict: insertion-ordered set)
        self.hungry: dict[ChargingSession, None] = {}
        #: its price plan (None: the catalog's default plan), and a change of plan due
        #: from a date: (plan, epoch seconds), applied by the first rating at or after it
        self.plan = plan
        self.plan_next: tuple[str | None, float] | None = None

    def plan_at(self, now: float) -> str | None:
        """Its plan at `now` (a change of plan due by then takes effect)."""
        pending = self.plan_next
        if pending is not None and now >= pending[1]:
            self.plan = pending[0]
            self.plan_next = None
        return self.plan

    @property
    def available(self) -> Decimal:
        """Balance minus what reservations hold (exact, whatever the caller's context)."""
        return EXACT.subtract(self.balance, self.reserved)

    def counter_available(self, name: str | None) -> Decimal:
        """Units of counter `name` not held by a reservation."""
        if name is None:
            return ZERO
        return self.counters.get(name, ZERO) - self.counters_reserved.get(name, ZERO)

    def hold(self, amount: Decimal, counter: str | None, units: Decimal) -> None:
        """Reserve money and counter units."""
        self.reserved += amount
        if units:
            assert counter is not None
            self.counters_reserved[counter] = self.counters_reserved.get(counter, ZERO) + units

    def release(self, amount: Decimal, counter: str | None, units: Decimal) -> None:
        """Give back what `hold` took."""
        self.reserved -= amount
        if units:
            assert counter is not None
            left = self.counters_reserved[counter] - units
            if left:
                self.counters_reserved[counter] = left
            else:
                del self.counters_reserved[counter]

    def debit(self, amount: Decimal, counter: str | None, units: Decimal) -> None:
        """Charge money (the balance may go below zero) and consume counter units."""
        self.balance -= amount
        if units:
            assert counter is not None
            self.counters[counter] = self.counters.get(counter, ZERO) - units

    def check_balance(self, balance: Decimal) -> None:
        """Refused (INVALID_REQUEST) when a balance of `balance`, or the available credit it
        leaves, would be outside the wire's range."""
        if not in_wire_range(balance):
            raise out_of_range(f"the balance of {self.user_id!r}", balance)
        available = EXACT.subtract(balance, self.reserved)
        if not in_wire_range(available):
            raise out_of_range(f"the available credit of {self.user_id!r}", available)

    def snapshot(self) -> m.Subscriber:
        """The subscriber as the operator API shows it."""
        return m.Subscriber(self.user_id, self.currency, self.balance, self.reserved,
                            self.available, dict(self.counters),
                            dict(self.counters_reserved), self.plan)
