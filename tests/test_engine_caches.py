"""The performance caches: owned by one engine (or one codec cache), bounded, never torn."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal as D

import pytest

from cc_server.engine import Engine
from cc_server.engine.caches import ITEMS_BOUND, VALUES_BOUND, EngineCaches
from protocol import buildinfo, codec
from protocol import messages as m


def start(engine: Engine, sid: str, now: float) -> dt.datetime:
    """Start a session at `now`; the time stamped on its reservation's transaction."""
    req = m.Execute(sid.encode(), m.ContainerKind.START, "u", "DATA", sid, (
        m.SubRequest(m.Action.RESERVE, "r1", m.ChargeableItem("data", {"volume": 1}),
                     ttl=30),))
    outcome = engine.execute(req, now).outcomes[0]
    assert outcome.error is None and outcome.reserve_result is not None
    return outcome.reserve_result.transactions[0].time


def engine() -> Engine:
    e = Engine()
    e.create_subscriber("u", D(100))
    return e


class SwitchingNow(float):
    """A `now` that runs another engine's call the first time the engine compares it to
    its cached time: what another thread (another server) can do at that very moment."""

    other: Callable[[], object]
    fired = False

    def __ne__(self, value: object) -> bool:
        if not self.fired:
            self.fired = True
            self.other()
        return float(self) != value


@pytest.mark.skipif(buildinfo.build() == "compiled",
                    reason="forces the interleaving through a float subclass's comparison, "
                           "which compiled code does on a C double; the pure run covers it")
def test_two_engines_never_pair_one_time_with_the_others_datetime() -> None:
    a, b = engine(), engine()
    assert start(a, "a1", 1000.0) == dt.datetime.fromtimestamp(1000.0, dt.UTC)
    other_stamp: list[dt.datetime] = []
    now = SwitchingNow(1000.0)
    now.other = lambda: other_stamp.append(start(b, "b1", 2000.0))
    stamped = start(a, "a2", now)
    assert now.fired and other_stamp == [dt.datetime.fromtimestamp(2000.0, dt.UTC)]
    assert stamped == dt.datetime.fromtimestamp(1000.0, dt.UTC)


def test_alternating_engines_each_stamp_their_own_now() -> None:
    a, b = engine(), engine()
    for i in range(20):
        for e, now in ((a, 1000.0 + i), (b, 5000.0 + i / 1000)):
            assert start(e, f"s{i}-{now}", now) == dt.datetime.fromtimestamp(now, dt.UTC)


def test_each_engine_owns_its_caches() -> None:
    a, b = engine(), engine()
    assert a.caches is not b.caches
    start(a, "s1", 1000.0)
    assert a.caches.sizes()["values"] >= 1
    assert b.caches.sizes() == {"items": 0, "values": 0, "amounts": 0, "quantities": 0}


def test_every_engine_cache_is_bounded_and_clears_when_full() -> None:
    caches = EngineCaches()
    for i in range(VALUES_BOUND + 10):
        caches.value(f"r{i}")
        caches.item(m.ChargeableItem("data", {"volume": i}))
        caches.amount(D(i))
        assert caches.quantity(i) == i
        sizes = caches.sizes()
        assert sizes["values"] <= VALUES_BOUND and sizes["items"] <= ITEMS_BOUND
        assert sizes["amounts"] <= VALUES_BOUND and sizes["quantities"] <= VALUES_BOUND
    sizes = caches.sizes()     # cleared at the bound, then refilled
    assert sizes["values"] == 10 and sizes["items"] == (VALUES_BOUND + 10) % ITEMS_BOUND
    assert sizes["amounts"] == sizes["quantities"] == 10


def test_engine_caches_share_equal_values_and_keep_the_rest_as_given() -> None:
    caches = EngineCaches()
    first = m.ChargeableItem("data", {"volume": 5})
    assert caches.item(m.ChargeableItem("data", {"volume": 5})) is caches.item(first)
    exact = m.ChargeableItem("data", {"volume": D(5)})
    assert caches.item(exact) is exact           # 5 == D(5): only exact ints are shared
    two = m.ChargeableItem("data", {"volume": 5, "x": 1})
    assert caches.item(two) is two
    assert caches.ttl(1.5) == 1.5
    if buildinfo.build() == "pure":   # compiled, a TTL is a C double: nothing to share
        assert caches.ttl(int("3000")) is caches.ttl(int("3000"))
    rid = "".join(["r", "1"])
    assert caches.value(rid) is caches.value("".join(["r", "1"]))
    assert caches.datetime(10.0) is caches.datetime(10.0)


def test_decimal_cache_is_bounded_and_one_per_owner() -> None:
    small, other = codec.DecimalCache(bound=8), codec.DecimalCache(bound=8)
    for i in range(20):
        body = codec.pack({"amount": D(i)})
        assert codec.unpack(body, small) == {"amount": D(i)}
        assert len(small.table) <= 8
    assert len(small.table) == 20 - 16 and not other.table
    body = codec.pack({"amount": D("1.50")})
    first, again = codec.unpack(body, other)["amount"], codec.unpack(body, other)["amount"]
    assert first is again and first == D("1.50")


def test_held_amounts_are_shared_only_when_they_print_the_same() -> None:
    caches = EngineCaches()
    first = caches.amount(D("1.00"))
    assert caches.amount(D("1.00")) is first
    other = D("1.0")                      # equal, but it prints otherwise: never swapped
    assert caches.amount(other) is other and str(caches.amount(D("1.0"))) == "1.0"
    assert str(caches.amount(D("1.00"))) == "1.00"


def test_int_quantities_share_one_exact_decimal() -> None:
    caches = EngineCaches()
    first = caches.quantity(100)
    assert caches.quantity(100) is first and str(first) == "100"
    assert str(caches.quantity(0)) == "0" and caches.quantity(10**17) == D(10**17)


def test_a_million_reservations_of_one_quota_hold_one_amount_object() -> None:
    e = engine()
    for n in range(3):
        start(e, f"s{n}", 1000.0)
    held = [cs.held for s in e.sessions.values() for cs in s.charging_sessions()]
    assert len(held) == 3 and held[0] is held[1] is held[2]
