"""Heartbeat bookkeeping with a fake clock."""

from __future__ import annotations

import pytest

from protocol.liveness import Due, Liveness


def test_ping_after_one_quiet_interval_then_dead_after_three() -> None:
    live = Liveness(interval=1.0, now=100.0)
    assert live.due(100.5) is Due.NOTHING
    assert live.due(101.0) is Due.PING
    live.sent(101.0)
    assert live.due(101.5) is Due.NOTHING
    assert live.due(103.0) is Due.DEAD


def test_receiving_keeps_the_peer_alive() -> None:
    live = Liveness(interval=1.0, now=0.0)
    for t in (0.9, 1.8, 2.7, 3.6):
        live.received(t)
        live.sent(t)
    assert live.due(4.0) is Due.NOTHING
    assert live.next_check(4.0) == pytest.approx(0.6)


def test_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        Liveness(interval=0, now=0)
