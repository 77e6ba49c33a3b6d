"""Fault rules, the request record and the test clocks, as units (no server, no sleeps)."""

from __future__ import annotations

import datetime as dt

import pytest

from cc_server.clock import ClockError, ManualClock, ScaledClock, parse_time
from cc_server.faults import FaultError, Faults, Request, Rule, rule_from_map
from cc_server.record import Record
from protocol import codec
from protocol import messages as m
from protocol.frames import encode_frame

UPDATE = Request("EXECUTE", user="alice-1", service="DATA", session="s-1", kind="update",
                 actions=("confirm_and_reserve",), conn_user="gw")


def test_match_fields_and_globs() -> None:
    assert Rule("busy", user="alice*", kind="update").matches(UPDATE)
    assert not Rule("busy", user="bob*").matches(UPDATE)
    assert Rule("busy", sub_action="confirm_and_reserve", conn_user="g?").matches(UPDATE)
    assert not Rule("busy", sub_action="cancel").matches(UPDATE)
    assert not Rule("busy", type="ADMIN").matches(UPDATE)
    assert not Rule("drop-notify").matches(UPDATE)          # notify actions match NOTIFY only
    assert Rule("drop-notify", listener=7).matches(Request("NOTIFY", listener=7))


def test_schedule_first_n_every_kth_after_m() -> None:
    first_two = Rule("busy", times=2)
    assert [first_two.consider(UPDATE) for _ in range(4)] == [True, True, False, False]
    every_third = Rule("busy", every=3)
    assert [every_third.consider(UPDATE) for _ in range(6)] == \
        [False, False, True, False, False, True]
    after_two = Rule("busy", after=2, times=1)
    assert [after_two.consider(UPDATE) for _ in range(4)] == [False, False, True, False]
    assert (after_two.matched, after_two.fired) == (4, 1)


def test_probability_is_seeded_and_repeatable() -> None:
    def run() -> list[bool]:
        rule = Rule("busy", probability=0.5, seed=42)
        return [rule.consider(UPDATE) for _ in range(50)]

    first = run()
    assert first == run() and 10 < sum(first) < 40


@pytest.mark.parametrize("bad", [
    {"action": "explode"}, {"action": "error"}, {"action": "error", "code": "NOPE"},
    {"action": "busy", "code": "SERVER_ERROR"}, {"action": "delay"},
    {"action": "busy", "kind": "begin"}, {"action": "busy", "times": 0},
    {"action": "busy", "probability": 1.5}, {"action": "busy", "colour": "red"},
    {"action": "error", "code": "PROTOCOL_ERROR", "scope": "subrequest"},
    {"kind": "update"}, {"action": "busy", "listener": 300},
])
def test_bad_rules_are_refused_with_the_field_named(bad: dict[str, object]) -> None:
    with pytest.raises(FaultError):
        rule_from_map(bad)


def test_rule_from_map_accepts_dashes_and_counts_in_to_wire() -> None:
    rule = rule_from_map({"action": "error", "code": "CREDIT_LIMIT_REACHED",
                          "scope": "subrequest", "sub-action": "reserve", "seconds": 0})
    assert rule.sub_action == "reserve" and rule.seconds == 0.0
    wire = rule.to_wire()
    assert wire["code"] == "CREDIT_LIMIT_REACHED" and wire["fired"] == 0 and "_rng" not in wire


def test_faults_add_is_a_context_manager_and_fire_counts() -> None:
    faults = Faults()
    with faults.add(action="drop-reply", kind="update", times=1) as handle:
        assert [r.action for r in faults.fire(UPDATE)] == ["drop-reply"]
        assert faults.fire(UPDATE) == []
        assert (handle.matched, handle.fired) == (2, 1)
        assert [r["id"] for r in faults.to_wire()] == [handle.id]
    assert not faults and faults.to_wire() == []


def test_faults_off_refuse_rules() -> None:
    with pytest.raises(FaultError, match="no-test-controls"):
        Faults(enabled=False).add(action="busy")


def test_delay_jitter_stays_in_range() -> None:
    rule = Rule("delay", seconds=0.5, jitter=0.25, seed=1)
    assert all(0.5 <= rule.delay() <= 0.75 for _ in range(100))


def _execute(session: str, kind: str, volume: int) -> bytes:
    body = {"op": b"x", "kind": kind, "user": "alice", "service": "DATA", "session": session,
            "subs": [["confirm", "r-1", ["data", {"volume": volume}], None, None, None, None]]}
    return encode_frame(m.MsgType.EXECUTE, 5, codec.pack(body))


def test_record_ring_filters_and_verify() -> None:
    record = Record(3)
    for i, data in enumerate([_execute("s-1", "start", 1), _execute("s-1", "update", 10),
                              _execute("s-2", "update", 5), _execute("s-1", "update", 20)]):
        record.add_frames(100.0 + i, "127.0.0.1:5000", "gw", "in", data)
    assert len(record.entries) == 3 and record.entries[0].seq == 2   # the ring dropped #1
    found = record.verify(2, kind="update", session="s-1",
                          last=lambda e: e.subrequests[0]["item"][1]["volume"] == 20)
    assert [e.seq for e in found] == [2, 4]
    assert [e.seq for e in record.find(since=102.0)] == [3, 4]
    with pytest.raises(AssertionError, match="expected 3 in frame"):
        record.verify(3, kind="update", session="s-1")
    with pytest.raises(AssertionError, match="last frame"):
        record.verify(last=lambda e: e.session == "s-9")


def test_record_keeps_undecodable_bodies_raw() -> None:
    record = Record(10)
    record.add(1.0, "c", None, "in", m.MsgType.EXECUTE, 1, b"\xc1\xc1")
    entry = record.entries[0]
    assert entry.body is None and entry.raw == b"\xc1\xc1" and entry.type == "EXECUTE"
    assert entry.to_wire()["raw"] == b"\xc1\xc1"


def test_manual_clock_moves_forward_only_and_tells() -> None:
    moved: list[float] = []
    clock = ManualClock(1000.0)
    clock.on_move = moved.append
    assert clock.advance(1800) == 2800.0 and clock() == 2800.0
    clock.set(dt.datetime.fromtimestamp(3000.0, dt.UTC))
    assert moved == [2800.0, 3000.0]
    with pytest.raises(ClockError):
        clock.set(10.0)
    with pytest.raises(ClockError):
        clock.advance(-1)


def test_scaled_clock_runs_k_times_faster() -> None:
    real = [50.0]
    clock = ScaledClock(60.0, start=1000.0, source=lambda: real[0])
    real[0] += 2.0
    assert clock() == 1120.0


def test_parse_time_needs_a_zone() -> None:
    assert parse_time("2026-11-28T10:00:00Z").tzinfo is not None
    for bad in ("2026-11-28T10:00:00", "yesterday"):
        with pytest.raises(ClockError):
            parse_time(bad)
