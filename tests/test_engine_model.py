"""Random container sequences against the engine and an independent model (SPEC 2, 3, 8).

The model knows only the catalog's prices (section 8) and the container rules of section 3;
it predicts every outcome's error code and amounts, and after every step the test checks
the conservation rules of section 3 on the engine, on the model, and from the journal alone.
The catalog is section 8's with price plans: VOICE has a peak period (mon-fri 08:00-19:00
UTC) and a daily allowance refill, DATA graduated tiers over a usage counter reset at each
month start. The clock starts just before 19:00 on the last day of a month, so calls cross
into the evening rate and jumps of hours cross midnight and the month start.
"""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from cc_server.engine import Catalog, Engine, Refused, refills
from protocol import messages as m
from protocol.errors import ErrorCode

D = Decimal
ZERO = D(0)
T0 = dt.datetime(2026, 11, 30, 18, 59, 30, tzinfo=dt.UTC).timestamp()   # a Monday
PEAK = D("0.10")           # VOICE, mon-fri 08:00-19:00 UTC; else its price 0.05
DAILY_SECONDS = D(90)      # free_seconds is set to this at each day start
USER = "u"
SIDS = ("s0", "s1", "s2", "s3")
RIDS = ("r0", "r1", "r2")
CANCELED, CONFIRMED = m.Resolution.CANCELED, m.Resolution.CONFIRMED


@dataclass(frozen=True)
class Plan:
    """SPEC section 8, written out independently of the engine's catalog."""

    item: str
    quantity: str
    step: Decimal
    price: Decimal
    counter: str | None
    peak: bool = False                                  # VOICE's peak period
    tiers: tuple[tuple[Decimal | None, Decimal], ...] = ()   # (up to, price)
    usage: str | None = None                            # confirmed quantity counted here


PLANS = {
    "DATA": Plan("data", "volume", D(1), D("0.01"), "free_data",
                 tiers=((D(50), D("0.01")), (None, D("0.005"))), usage="data_used"),
    "VOICE": Plan("call", "duration", D(60), D("0.05"), "free_seconds", peak=True),
    "SMS": Plan("sms", "count", D(1), D("0.10"), None),
}
CATALOG = """
[plans.model.services.DATA.items.data]
quantity = "volume"
allowance = "free_data"
usage_counter = "data_used"
tiers = [{ up_to = 50, price = "0.01" }, { price = "0.005" }]
[plans.model.services.VOICE.items.call]
quantity = "duration"
step = 60
price = "0.05"
allowance = "free_seconds"
rates = [{ days = "mon-fri", from = "08:00", to = "19:00", price = "0.10" }]
[plans.model.services.SMS.items.sms]
quantity = "count"
price = "0.10"
[[plans.model.allowances]]
counter = "free_seconds"
units = 90
every = "day"
[[plans.model.allowances]]
counter = "data_used"
units = 0
every = "month"
"""


def is_peak(when: float) -> bool:
    local = dt.datetime.fromtimestamp(when, dt.UTC)
    return local.weekday() < 5 and 8 * 60 <= local.hour * 60 + local.minute < 19 * 60


@dataclass
class MRes:
    quantity: Decimal
    ttl: float
    expires_at: float
    resolution: m.Resolution
    inverse: bool
    held: Decimal = ZERO
    units: Decimal = ZERO
    open: bool = True
    starved: bool = False


@dataclass
class MSession:
    service: str
    res: dict[str, MRes] = field(default_factory=dict)


quantities = st.one_of(st.integers(0, 260),
                       st.integers(0, 2600).map(lambda n: D(n) / 10))
ttls = st.sampled_from([30, 10, 2.5, 1, 0.5])
renew_ttls = st.sampled_from([-1, 30, 10, 1, 0.5])
resolutions = st.sampled_from([None, CANCELED, CONFIRMED])
#: True nine times in ten (True first: what hypothesis shrinks towards)
USUALLY = st.sampled_from([True] * 9 + [False])


def usually(data: st.DataObject, label: str) -> bool:
    return data.draw(USUALLY, label=label)


class EngineModel(RuleBasedStateMachine):
    """Drives one subscriber's sessions; the model is plain dicts and catalog prices."""

    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine(Catalog.from_dict(tomllib.loads(CATALOG), "model"))
        self.now = T0
        self.initial = ZERO
        self.initial_counters: dict[str, Decimal] = {}
        self.top_ups = ZERO
        self.confirmed = ZERO
        self.balance = ZERO
        self.counters: dict[str, Decimal] = {}
        self.sessions: dict[str, MSession] = {}
        self.op = 0

    # -------------------------------------------------------------- model arithmetic

    def counter_reserved(self, name: str) -> Decimal:
        return sum((r.units for s in self.sessions.values() for r in s.res.values()
                    if r.open and s.service in PLANS and PLANS[s.service].counter == name),
                   ZERO)

    def reserved(self) -> Decimal:
        return sum((r.held for s in self.sessions.values() for r in s.res.values() if r.open),
                   ZERO)

    def rate(self, plan: Plan, quantity: Decimal, when: float) -> tuple[Decimal, Decimal]:
        """(money, counter units) at the date `when`: the allowance first, then whole
        steps rounded up: of the period's price, or of each tier's for its part."""
        free = ZERO
        if plan.counter is not None:
            free = self.counters.get(plan.counter, ZERO) - self.counter_reserved(plan.counter)
        covered = min(max(free, ZERO), quantity)
        if plan.tiers:
            assert plan.usage is not None
            position = self.counters.get(plan.usage, ZERO) + covered
            left, amount = quantity - covered, ZERO
            for up_to, price in plan.tiers:
                room = left if up_to is None else max(ZERO, min(left, up_to - position))
                amount += math.ceil(room / plan.step) * price
                left -= room
                position += room
            return amount, covered
        price = PEAK if plan.peak and is_peak(when) else plan.price
        steps = math.ceil((quantity - covered) / plan.step)
        return steps * price, covered

    def affordable(self, plan: Plan, wanted: Decimal, credit: Decimal) -> Decimal:
        """The largest whole-step quantity (after the allowance) whose price fits; with
        tiers: each whole tier while it fits, then whole steps of the next."""
        _, covered = self.rate(plan, wanted, self.now)
        if plan.tiers:
            assert plan.usage is not None
            position = self.counters.get(plan.usage, ZERO) + covered
            got = covered
            for up_to, price in plan.tiers:
                room = wanted - got if up_to is None else \
                    max(ZERO, min(wanted - got, up_to - position))
                if not room:
                    continue
                cost = math.ceil(room / plan.step) * price
                if cost <= credit:
                    got, position, credit = got + room, position + room, credit - cost
                    continue
                return got + min(room, (max(credit, ZERO) // price) * plan.step)
            return got
        best = ZERO
        k = 0
        while True:
            quantity = covered + k * plan.step
            price = self.rate(plan, quantity, self.now)[0]
            if quantity >= wanted or (price and price > credit):   # allowance costs nothing
                break
            best = quantity
            k += 1
        return best

    def hold(self, plan: Plan, res: MRes, quantity: Decimal) -> Decimal | None:
        """Reserve for `res`; the amount, or None for CREDIT_LIMIT_REACHED."""
        amount, units = self.rate(plan, quantity, self.now)
        available = self.balance - self.reserved()
        if amount and amount > available:
            if not res.inverse:
                return None
            quantity = self.affordable(plan, quantity, available)
            if quantity <= 0:
                return None
            amount, units = self.rate(plan, quantity, self.now)
        res.quantity, res.held, res.units, res.starved = quantity, amount, units, False
        return amount

    def release(self, res: MRes) -> Decimal:
        held = res.held
        res.held = res.units = ZERO
        return held

    def debit(self, plan: Plan, amount: Decimal, units: Decimal) -> None:
        self.balance -= amount
        self.confirmed += amount
        if plan.counter is not None and units:
            self.counters[plan.counter] -= units

    def consume(self, plan: Plan, quantity: Decimal, when: float) -> Decimal:
        amount, units = self.rate(plan, quantity, when)
        self.debit(plan, amount, units)
        self.count(plan, quantity)
        return amount

    def count(self, plan: Plan, quantity: Decimal) -> None:
        """A confirmed quantity goes to the item's usage counter."""
        if plan.usage is not None:
            self.counters[plan.usage] = self.counters.get(plan.usage, ZERO) + quantity

    def used(self, plan: Plan, res: MRes, quantity: Decimal | int | None) -> Decimal:
        """Debit a confirmation: the quantity given, else the stored one; a starved
        reservation confirmed without a quantity held nothing and confirms zero."""
        if quantity is None and res.starved:
            return ZERO
        # rated at the date of the reservation it confirms
        return self.consume(plan, res.quantity if quantity is None else D(quantity),
                            res.expires_at - res.ttl)

    def clean_up(self, plan: Plan, res: MRes, resolution: m.Resolution) -> None:
        held, units = res.held, res.units
        self.release(res)
        if resolution is CONFIRMED:
            self.debit(plan, held, units)
            if not res.starved:
                self.count(plan, res.quantity)
        res.open = False

    # -------------------------------------------------------------- engine calls

    def item(self, service: str, quantity: Decimal | int | None) -> m.ChargeableItem | None:
        if quantity is None:
            return None
        plan = PLANS[service]
        return m.ChargeableItem(plan.item, {plan.quantity: quantity})

    def execute(self, kind: m.ContainerKind, sid: str, service: str,
                *subs: m.SubRequest) -> m.ExecuteResult | ErrorCode:
        self.op += 1
        req = m.Execute(self.op.to_bytes(8, "big"), kind, USER, service, sid, subs)
        try:
            return self.engine.execute(req, self.now)
        except Refused as exc:
            return exc.code

    def service_of(self, sid: str, fallback: str) -> str:
        return self.sessions[sid].service if sid in self.sessions else fallback

    def pick_sid(self, data: st.DataObject) -> str:
        """Mostly a live session, sometimes any id (unknown, stopped or expired)."""
        live = sorted(self.sessions)
        if live and usually(data, "live session"):
            return data.draw(st.sampled_from(live), label="sid")
        return data.draw(st.sampled_from(SIDS), label="sid")

    def pick_rid(self, data: st.DataObject, sid: str, fresh: bool = False) -> str:
        """Mostly an open (or, with `fresh`, an unused) reservation id of `sid`."""
        session = self.sessions.get(sid)
        used = session.res if session else {}
        wanted = [r for r in RIDS if r not in used] if fresh else \
            [r for r, res in used.items() if res.open]
        if wanted and usually(data, "usual rid"):
            return data.draw(st.sampled_from(wanted), label="rid")
        return data.draw(st.sampled_from(RIDS), label="rid")

    # -------------------------------------------------------------- rules

    @initialize(balance=st.sampled_from([D("2.50"), D("1"), D("0.30"), D("4"), D("0.07"),
                                         D(0)]),
                free_data=st.integers(0, 120), free_seconds=st.sampled_from([0, 30, 90, 200]))
    def create(self, balance: Decimal, free_data: int, free_seconds: int) -> None:
        self.initial = self.balance = balance
        self.initial_counters = {"free_data": D(free_data), "free_seconds": D(free_seconds),
                                 "data_used": ZERO}
        self.counters = dict(self.initial_counters)
        self.engine.create_subscriber(USER, balance, "EUR", self.initial_counters)
        refills.apply(self.engine, self.now, [])     # refills count from now

    @rule(data=st.data(), service=st.sampled_from(sorted(PLANS)),
          rid=st.sampled_from(RIDS), quantity=quantities, ttl=ttls, resolution=resolutions,
          inverse=st.booleans())
    def start(self, data: st.DataObject, service: str, rid: str, quantity: Decimal | int,
              ttl: float, resolution: m.Resolution | None, inverse: bool) -> None:
        free = [sid for sid in SIDS if sid not in self.sessions]
        pool = free if free and usually(data, "free sid") else SIDS
        sid = data.draw(st.sampled_from(pool), label="sid")
        plan = PLANS[service]
        got = self.execute(m.ContainerKind.START, sid, service, m.SubRequest(
            m.Action.RESERVE, rid, item=self.item(service, quantity), ttl=ttl,
            default_resolution=resolution,
            property_to_inverse=plan.quantity if inverse else None))
        if sid in self.sessions:
            assert got == ErrorCode.SESSION_EXISTS
            return
        assert isinstance(got, m.ExecuteResult)
        (outcome,) = got.outcomes
        res = MRes(D(quantity), ttl, self.now + ttl, resolution or CANCELED, inverse)
        amount = self.hold(plan, res, D(quantity))
        if amount is None:      # nothing held: the session does not come to exist
            assert outcome.error == ErrorCode.CREDIT_LIMIT_REACHED
            return
        self.sessions[sid] = MSession(service, {rid: res})
        assert outcome.error is None, outcome
        assert outcome.reserve_result is not None
        assert outcome.reserve_result.amount == amount
        assert outcome.granted_item is not None
        assert outcome.granted_item.properties[plan.quantity] == res.quantity

    @precondition(lambda self: bool(self.sessions))
    @rule(data=st.data(), quantity=quantities, ttl=ttls, resolution=resolutions,
          inverse=st.booleans())
    def reserve(self, data: st.DataObject, quantity: Decimal | int, ttl: float,
                resolution: m.Resolution | None, inverse: bool) -> None:
        sid = self.pick_sid(data)
        rid = self.pick_rid(data, sid, fresh=True)
        service = self.service_of(sid, "DATA")
        plan = PLANS[service]
        got = self.execute(m.ContainerKind.UPDATE, sid, service, m.SubRequest(
            m.Action.RESERVE, rid, item=self.item(service, quantity), ttl=ttl,
            default_resolution=resolution,
            property_to_inverse=plan.quantity if inverse else None))
        session = self.sessions.get(sid)
        if session is None:
            assert got == ErrorCode.SESSION_NOT_FOUND
            return
        assert isinstance(got, m.ExecuteResult)
        (outcome,) = got.outcomes
        if rid in session.res:
            assert outcome.error == ErrorCode.DUPLICATE_RESERVATION
            return
        res = MRes(D(quantity), ttl, self.now + ttl, resolution or CANCELED, inverse)
        amount = self.hold(plan, res, D(quantity))
        if amount is None:
            assert outcome.error == ErrorCode.CREDIT_LIMIT_REACHED
            return
        session.res[rid] = res
        assert outcome.error is None, outcome
        assert outcome.reserve_result is not None
        assert outcome.reserve_result.amount == amount

    def _open(self, sid: str, rid: str, got: m.ExecuteResult | ErrorCode
              ) -> tuple[MSession, MRes, m.Outcome] | None:
        session = self.sessions.get(sid)
        if session is None:
            assert got == ErrorCode.SESSION_NOT_FOUND
            return None
        assert isinstance(got, m.ExecuteResult)
        (outcome,) = got.outcomes
        res = session.res.get(rid)
        if res is None or not res.open:
            assert outcome.error == ErrorCode.RESERVATION_NOT_FOUND
            return None
        return session, res, outcome

    @precondition(lambda self: bool(self.sessions))
    @rule(data=st.data(), quantity=st.none() | quantities)
    def confirm(self, data: st.DataObject, quantity: Decimal | int | None) -> None:
        sid = self.pick_sid(data)
        rid = self.pick_rid(data, sid)
        service = self.service_of(sid, "DATA")
        got = self.execute(m.ContainerKind.UPDATE, sid, service, m.SubRequest(
            m.Action.CONFIRM, rid, item=self.item(service, quantity)))
        found = self._open(sid, rid, got)
        if found is None:
            return
        session, res, outcome = found
        plan = PLANS[session.service]
        released = self.release(res)
        charged = self.used(plan, res, quantity)
        res.open = False
        assert outcome.error is None, outcome
        assert outcome.cancel_result is not None and outcome.confirm_result is not None
        assert (outcome.cancel_result.amount, outcome.confirm_result.amount) == \
            (released, charged)

    @precondition(lambda self: bool(self.sessions))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        sid = self.pick_sid(data)
        rid = self.pick_rid(data, sid)
        service = self.service_of(sid, "DATA")
        got = self.execute(m.ContainerKind.UPDATE, sid, service,
                           m.SubRequest(m.Action.CANCEL, rid))
        found = self._open(sid, rid, got)
        if found is None:
            return
        _, res, outcome = found
        released = self.release(res)
        res.open = False
        assert outcome.error is None
        assert outcome.cancel_result is not None
        assert outcome.cancel_result.amount == released

    @precondition(lambda self: bool(self.sessions))
    @rule(data=st.data(), used=st.none() | quantities, wanted=st.none() | quantities,
          ttl=renew_ttls, resolution=resolutions, inverse=st.booleans())
    def confirm_and_reserve(self, data: st.DataObject, used: Decimal | int | None,
                            wanted: Decimal | int | None, ttl: float,
                            resolution: m.Resolution | None, inverse: bool) -> None:
        sid = self.pick_sid(data)
        rid = self.pick_rid(data, sid)
        service = self.service_of(sid, "DATA")
        plan = PLANS[service]
        got = self.execute(m.ContainerKind.UPDATE, sid, service, m.SubRequest(
            m.Action.CONFIRM_AND_RESERVE, rid, item=self.item(service, used),
            next_item=self.item(service, wanted), ttl=ttl, default_resolution=resolution,
            property_to_inverse=plan.quantity if inverse else None))
        found = self._open(sid, rid, got)
        if found is None:
            return
        _, res, outcome = found
        stored = res.quantity
        released = self.release(res)
        charged = self.used(plan, res, used)
        res.starved = False
        res.ttl = res.ttl if ttl < 0 else ttl
        res.expires_at = self.now + res.ttl
        res.resolution = resolution or res.resolution
        res.inverse = res.inverse or inverse
        amount = self.hold(plan, res, stored if wanted is None else D(wanted))
        assert outcome.cancel_result is not None and outcome.confirm_result is not None
        assert (outcome.cancel_result.amount, outcome.confirm_result.amount) == \
            (released, charged)
        if amount is None:     # starved: open, nothing held, until its TTL
            res.starved = True
            res.quantity = stored if wanted is None else D(wanted)
            assert outcome.error == ErrorCode.CREDIT_LIMIT_REACHED
            assert outcome.reserve_result is None
        else:
            assert outcome.error is None, outcome
            assert outcome.reserve_result is not None
            assert outcome.reserve_result.amount == amount

    @precondition(lambda self: bool(self.sessions))
    @rule(data=st.data(), action=st.sampled_from([None, m.Action.CONFIRM, m.Action.CANCEL]),
          quantity=st.none() | quantities)
    def stop(self, data: st.DataObject, action: m.Action | None,
             quantity: Decimal | int | None) -> None:
        sid = self.pick_sid(data)
        rid = self.pick_rid(data, sid)
        service = self.service_of(sid, "DATA")
        subs = () if action is None else (m.SubRequest(
            action, rid, item=self.item(service, quantity) if action is m.Action.CONFIRM
            else None),)
        got = self.execute(m.ContainerKind.STOP, sid, service, *subs)
        session = self.sessions.get(sid)
        if session is None:
            assert got == ErrorCode.SESSION_NOT_FOUND
            return
        assert isinstance(got, m.ExecuteResult)
        plan = PLANS[session.service]
        if action is not None:
            res = session.res.get(rid)
            if res is None or not res.open:
                assert got.outcomes[0].error == ErrorCode.RESERVATION_NOT_FOUND
            else:
                self.release(res)
                if action is m.Action.CONFIRM:
                    self.used(plan, res, quantity)
                res.open = False
                assert got.outcomes[0].error is None
        for res in session.res.values():
            if res.open:
                self.clean_up(plan, res, res.resolution)
        del self.sessions[sid]
        assert sid not in self.engine.sessions

    @precondition(lambda self: bool(self.sessions))
    @rule(data=st.data())
    def admin_cancel(self, data: st.DataObject) -> None:
        sid = self.pick_sid(data)
        try:
            self.engine.cancel_session(sid, self.now)
        except Refused as exc:
            assert sid not in self.sessions
            assert exc.code == ErrorCode.SESSION_NOT_FOUND
            return
        session = self.sessions.pop(sid)
        for res in session.res.values():
            if res.open:
                self.clean_up(PLANS[session.service], res, CANCELED)

    @rule(amount=st.sampled_from([D("0.05"), D("0.5"), D("2")]))
    def top_up(self, amount: Decimal) -> None:
        self.engine.top_up(USER, amount, self.now)
        self.balance += amount
        self.top_ups += amount

    @rule(seconds=st.sampled_from([1, 5, 0.25, 20, 60, 5 * 3600]))
    def advance(self, seconds: float) -> None:
        before = dt.datetime.fromtimestamp(self.now, dt.UTC)
        self.now += seconds
        self.engine.expire(self.now)
        starts = refills.due(self.engine, self.now)     # as the server's timers do
        if starts is not None:
            refills.apply(self.engine, self.now, starts)
        for sid, session in list(self.sessions.items()):
            plan = PLANS[session.service]
            for res in session.res.values():
                if res.open and res.expires_at <= self.now:
                    self.clean_up(plan, res, res.resolution)
            if not any(r.open for r in session.res.values()) and \
                    max(r.expires_at for r in session.res.values()) <= self.now:
                del self.sessions[sid]
        after = dt.datetime.fromtimestamp(self.now, dt.UTC)
        if after.date() != before.date():      # never below what reservations hold
            self.counters["free_seconds"] = max(DAILY_SECONDS,
                                                self.counter_reserved("free_seconds"))
        if (after.year, after.month) != (before.year, before.month):
            self.counters["data_used"] = ZERO

    # -------------------------------------------------------------- invariants

    @invariant()
    def conservation(self) -> None:
        if not self.engine.accounts:
            return
        s = self.engine.get_subscriber(USER)
        assert self.balance == self.initial + self.top_ups - self.confirmed
        assert s.balance == self.balance
        assert s.reserved == self.reserved()
        live = sum((r.amount for info in self.engine.find_sessions(user_id=USER)
                    for r in info.reservations if r.state != "ended"), ZERO)
        assert s.reserved == live
        assert s.available == s.balance - s.reserved
        assert s.counters == self.counters
        for name, units in s.counters_reserved.items():
            assert units > 0
            assert units == self.counter_reserved(name)
            assert s.counters[name] - units >= 0
        for name in self.counters:
            assert s.counters_reserved.get(name, ZERO) == self.counter_reserved(name)

    @invariant()
    def open_reservation_tally_is_exact(self) -> None:
        assert self.engine.stats()["reservations"] == sum(
            1 for s in self.engine.sessions.values() for cs in s.charging_sessions() if cs.open)

    @invariant()
    def same_sessions_and_reservations(self) -> None:
        assert set(self.engine.sessions) == set(self.sessions)
        for info in self.engine.find_sessions(user_id=USER):
            model = self.sessions[info.session_id]
            assert {r.reservation_id for r in info.reservations} == set(model.res)
            for r in info.reservations:
                mres = model.res[r.reservation_id]
                state = "ended" if not mres.open else "starved" if mres.starved else "open"
                assert (r.state, r.amount) == (state, mres.held)
                cs = self.engine.sessions[info.session_id].charging_session(r.reservation_id)
                assert cs is not None and cs.expires_at == mres.expires_at

    @invariant()
    def journal_recomputes_balance_and_reserved(self) -> None:
        if not self.engine.accounts:
            return
        totals = {kind: ZERO for kind in m.TxKind}
        units = {kind: dict.fromkeys(self.initial_counters, ZERO) for kind in m.TxKind}
        for tx in self.engine.transactions(user_id=USER):
            assert tx.amount >= 0
            totals[tx.kind] += tx.amount
            for name, value in tx.counters.items():
                assert value > 0
                units[tx.kind][name] += value
        s = self.engine.get_subscriber(USER)
        assert s.balance == self.initial + totals[m.TxKind.TOP_UP] - totals[m.TxKind.CONFIRM]
        assert s.reserved == totals[m.TxKind.RESERVE] - totals[m.TxKind.RELEASE]
        assert totals[m.TxKind.TOP_UP] == self.top_ups
        assert totals[m.TxKind.CONFIRM] == self.confirmed
        for name, initial in self.initial_counters.items():
            assert s.counters[name] == \
                initial + units[m.TxKind.TOP_UP][name] - units[m.TxKind.CONFIRM][name]
            assert s.counters_reserved.get(name, ZERO) == \
                units[m.TxKind.RESERVE][name] - units[m.TxKind.RELEASE][name]

    @invariant()
    def renewals_only_for_hungry_charging_sessions(self) -> None:
        for cs, reason in self.engine.take_renewals().items():
            assert reason is m.RenewalReason.CREDIT_AVAILABLE
            if cs.open:
                assert cs.starved or cs.reduced
            else:   # queued by one expiry, then ended by a later one of the same batch
                assert cs.expires_at <= self.now


EngineModel.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestEngineModel = EngineModel.TestCase
