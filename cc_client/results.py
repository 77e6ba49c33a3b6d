"""What execute() returns: SessionResult, ReservationResult (RatingResult is shared)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

from protocol import messages as m
from protocol.codec import rating_from_prepared
from protocol.messages import ChargeableItem, RatingResult, Transaction

from .errors import ChargingError, error_from_code

__all__ = ["RatingResult", "ReservationResult", "SessionResult", "Transaction"]


class ReservationResult:
    """Outcome of one sub-request (or of one clean-up at stop).

    `error` is None when `ok`, else a `ChargingError` subclass instance whose `code` is the
    SPEC code (e.g. `CreditLimitReached`, code "CREDIT_LIMIT_REACHED").
    """

    __slots__ = ("_ratings", "balance_below_zero", "error", "expires_at", "granted_item",
                 "reservation_id")

    def __init__(self, reservation_id: str, error: ChargingError | None = None,
                 cancel_result: RatingResult | None = None,
                 confirm_result: RatingResult | None = None,
                 reserve_result: RatingResult | None = None,
                 granted_item: ChargeableItem | None = None,
                 expires_at: dt.datetime | None = None,
                 balance_below_zero: bool = False) -> None:
        self.reservation_id = reservation_id
        self.error = error
        # cancel, confirm, reserve: each a RatingResult, None, or its checked wire array,
        # built on first read (`_rating`)
        self._ratings: list[RatingResult | list[Any] | None] = [
            cancel_result, confirm_result, reserve_result]
        self.granted_item = granted_item
        self.expires_at = expires_at
        #: True when this confirm took the subscriber's balance below zero
        self.balance_below_zero = balance_below_zero

    @property
    def ok(self) -> bool:
        """True when the sub-request succeeded."""
        return self.error is None

    def _rating(self, index: int) -> RatingResult | None:
        """The lazy result: rating result `index`, built from its wire array on first read
        (a caller that reads only `ok` and the granted item never pays for it)."""
        ratings = self._ratings
        value = ratings[index]
        if isinstance(value, list):
            value = ratings[index] = rating_from_prepared(value)
        return value

    @property
    def cancel_result(self) -> RatingResult | None:
        """Result (1): the reservation released (re-rated), or None."""
        return self._rating(0)

    @property
    def confirm_result(self) -> RatingResult | None:
        """Result (2): what was charged for the confirmed item, or None."""
        return self._rating(1)

    @property
    def reserve_result(self) -> RatingResult | None:
        """Result (3): what the new reservation holds, or None."""
        return self._rating(2)

    @classmethod
    def from_outcome(cls, o: m.Outcome) -> ReservationResult:
        """Build from the wire outcome."""
        return _from_row(o)

    def __repr__(self) -> str:
        parts = [f"{self.reservation_id!r}", "ok" if self.ok else f"error={self.error!r}"]
        for name in ("cancel_result", "confirm_result", "reserve_result"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name.split('_')[0]}={value.amount} {value.currency}")
        if self.expires_at is not None:
            parts.append(f"expires_at={self.expires_at.isoformat()}")
        return f"ReservationResult({', '.join(parts)})"


def _from_row(o: Sequence[Any]) -> ReservationResult:
    """A ReservationResult from an Outcome, or from an outcome's wire array that
    `codec.execute_result_outcomes` checked: its rating results stay arrays until read."""
    # unpacked at once, and the class itself, not `cls`: in the compiled build each field
    # by name is an attribute lookup and a call through a type object a generic call (a
    # compiled class has no interpreted subclasses)
    rid, code, message, cancel, confirm, reserve, granted, expires, below = o
    error = None if code is None else error_from_code(code, message or "")
    result = ReservationResult(rid, error, None, None, None, granted, expires, below)
    ratings = result._ratings     # wire arrays are no `RatingResult | None` (checked compiled)
    ratings[0], ratings[1], ratings[2] = cancel, confirm, reserve
    return result


class SessionResult:
    """Outcomes of a container: `result[reservation_id]`, iteration in request order.

    Stop containers append one entry per charging session they cleaned up. If a container
    names the same reservation id twice, lookup by id gives the first outcome; iteration
    gives all of them.
    """

    __slots__ = ("_by_id", "_ordered", "_outcomes", "session_id")

    def __init__(self, session_id: str, results: list[ReservationResult]) -> None:
        self.session_id = session_id
        self._ordered = results
        # outcomes not yet in _ordered: Outcomes, or the wire arrays of a reply
        self._outcomes: Sequence[Sequence[Any]] = ()
        self._by_id: dict[str, ReservationResult] | None = None   # built on first lookup

    @classmethod
    def from_outcomes(cls, session_id: str, outcomes: Sequence[Sequence[Any]]
                      ) -> SessionResult:
        """The one way from a reply to a result: `outcomes` are `m.Outcome`s (an
        `m.ExecuteResult` unpacked: `from_outcomes(*msg)`) or the wire arrays that
        `codec.execute_result_outcomes` checked. Each `ReservationResult` is made when first
        asked for, and from wire arrays its rating results only when read: a caller that
        only checks `ok` (the common case) never pays for them."""
        result = SessionResult(session_id, [])
        result._outcomes = outcomes
        return result

    def _results(self) -> list[ReservationResult]:
        """The outcomes in request order (made from the wire outcomes on first use)."""
        if self._outcomes:
            self._ordered = [_from_row(o) for o in self._outcomes]
            self._outcomes = ()
        return self._ordered

    def _index(self) -> dict[str, ReservationResult]:
        """Outcomes by reservation id, the first of each id."""
        by_id = self._by_id
        if by_id is None:
            by_id = {}
            for r in self._results():
                by_id.setdefault(r.reservation_id, r)
            self._by_id = by_id
        return by_id

    @property
    def ok(self) -> bool:
        """True only when every sub-request succeeded."""
        if self._outcomes:     # an outcome has an error exactly when it carries a code
            return all(o[1] is None for o in self._outcomes)
        return all(r.error is None for r in self._ordered)

    @property
    def result(self) -> dict[str, ReservationResult]:
        """Outcomes by reservation id."""
        return self._index()

    def __getitem__(self, reservation_id: str) -> ReservationResult:
        return self._index()[reservation_id]

    def get(self, reservation_id: str) -> ReservationResult | None:
        """The outcome for `reservation_id`, or None."""
        return self._index().get(reservation_id)

    def __contains__(self, reservation_id: object) -> bool:
        return reservation_id in self._index()

    def __iter__(self) -> Iterator[ReservationResult]:
        return iter(self._results())

    def __len__(self) -> int:
        return len(self._outcomes) if self._outcomes else len(self._ordered)

    def keys(self) -> list[str]:
        """Reservation ids in request order."""
        return [r.reservation_id for r in self._results()]

    def __repr__(self) -> str:
        return f"SessionResult({self.session_id!r}, ok={self.ok}, {self._results()!r})"
