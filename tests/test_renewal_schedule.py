"""The renewal schedule of SPEC section 4, with fake connections and a fake clock."""

from __future__ import annotations

from cc_server.engine import ChargingSession, Session
from cc_server.renewal import RenewalService
from protocol import messages as m

T0 = 1_000.0
CREDIT = m.RenewalReason.CREDIT_AVAILABLE


class Peer:
    """A fake connection that records what it was sent."""

    def __init__(self, name: str, accepts: bool = True) -> None:
        self.name = name
        self.accepts = accepts
        self.got: list[tuple[int, int]] = []   # (notification id, attempt)

    def push(self, msg: m.Message) -> bool:
        assert isinstance(msg, m.Notification)
        if self.accepts:
            self.got.append((msg.notification_id, msg.attempt))
        return self.accepts

    def __repr__(self) -> str:
        return self.name


def starved(ttl: float = 60.0, listener: int | None = 7) -> ChargingSession:
    session = Session("s-1", "alice", "DATA", T0, listener, b"ctx")
    cs = ChargingSession(session, "r-1", m.ChargeableItem("data", {"volume": 10}), ttl,
                         T0 + ttl, m.Resolution.CANCELED, None)
    cs.starved = True
    session.add_charging_session(cs)
    return cs


def run(service: RenewalService, until: float, step: float = 0.05) -> None:
    t = T0
    while t <= until + 1e-9:
        service.tick(t)
        t = round(t + step, 6)


def test_primary_gets_attempt_one_at_once_with_every_field() -> None:
    service = RenewalService()
    primary, backup = Peer("primary"), Peer("backup")
    service.register(primary, 7)
    service.register(backup, 7)
    sent: list[m.Notification] = []
    primary.push = lambda msg: sent.append(msg) or True  # type: ignore[method-assign,func-returns-value]
    service.submit({starved(): CREDIT}, T0)
    (note,) = sent
    assert (note.session_id, note.reservation_id, note.user_id, note.service_id) == (
        "s-1", "r-1", "alice", "DATA")
    assert (note.listener_id, note.attempt, note.reason, note.external_data) == (
        7, 1, "credit_available", b"ctx")
    assert note.expires_at.timestamp() == T0 + 60
    assert backup.got == []


def test_resends_every_interval_rotating_after_send_timeout_until_attempts_run_out() -> None:
    service = RenewalService(send_timeout=0.5, resend_interval=1.0, resend_attempts=3)
    a, b = Peer("a"), Peer("b")
    service.register(a, 7)
    service.register(b, 7)
    service.submit({starved(): CREDIT}, T0)
    run(service, T0 + 10)
    assert a.got == [(1, 1), (1, 3)] and b.got == [(1, 2), (1, 4)]
    assert service.counts["sent"] == 1 and service.counts["resent"] == 3
    assert service.counts["expired_unacknowledged"] == 1 and not service.pending


def test_send_timeout_longer_than_interval_keeps_the_same_target() -> None:
    service = RenewalService(send_timeout=1.5, resend_interval=1.0, resend_attempts=3)
    a, b = Peer("a"), Peer("b")
    service.register(a, 7)
    service.register(b, 7)
    service.submit({starved(): CREDIT}, T0)
    run(service, T0 + 5)
    assert a.got == [(1, 1), (1, 2)] and b.got == [(1, 3), (1, 4)]


def test_zero_resend_attempts_sends_once() -> None:
    service = RenewalService(resend_attempts=0)
    a = Peer("a")
    service.register(a, 7)
    service.submit({starved(): CREDIT}, T0)
    run(service, T0 + 5)
    assert a.got == [(1, 1)]


def test_never_sent_at_or_after_expiry() -> None:
    service = RenewalService(resend_interval=1.0, resend_attempts=10)
    a = Peer("a")
    service.register(a, 7)
    service.submit({starved(ttl=2.5): CREDIT}, T0)
    run(service, T0 + 10)
    assert a.got == [(1, 1), (1, 2), (1, 3)]          # T0, T0+1, T0+2; expiry at T0+2.5
    assert service.counts["expired_unacknowledged"] == 1


def test_ack_stops_resends_and_only_registered_peers_may_ack() -> None:
    service = RenewalService()
    a, stranger = Peer("a"), Peer("stranger")
    service.register(a, 7)
    service.submit({starved(): CREDIT}, T0)
    assert service.ack(stranger, 1) == "unknown"
    assert service.ack(a, 1) == "acknowledged"
    assert service.ack(a, 1) == "already_acknowledged"
    run(service, T0 + 5)
    assert a.got == [(1, 1)]


def test_unregistered_listener_blocks_nothing_and_late_registration_gets_next_attempt() -> None:
    service = RenewalService(resend_interval=1.0)
    cs = starved()
    service.submit({cs: CREDIT}, T0)                  # nobody listens yet: attempt 1 lost
    run(service, T0 + 1.5)
    late = Peer("late")
    service.register(late, 7)
    run(service, T0 + 2.0)
    assert late.got == [(1, 3)]                       # the schedule kept going meanwhile
    assert service.counts["undeliverable"] == 2


def test_a_pending_notification_is_reused_not_duplicated() -> None:
    service = RenewalService()
    a = Peer("a")
    service.register(a, 7)
    cs = starved()
    service.submit({cs: CREDIT}, T0)
    service.submit({cs: CREDIT}, T0 + 0.1)
    assert a.got == [(1, 1)] and len(service.pending) == 1
    assert service.counts["reused"] == 1


def test_obsolete_once_reserved_again_or_ended() -> None:
    service = RenewalService()
    a = Peer("a")
    service.register(a, 7)
    cs = starved()
    service.submit({cs: CREDIT}, T0)
    cs.starved = False                     # the gateway reserved again without acking
    run(service, T0 + 3)
    assert a.got == [(1, 1)] and service.counts["obsolete"] == 1


def test_sessions_without_listener_are_not_notified() -> None:
    service = RenewalService()
    service.submit({starved(listener=None): CREDIT}, T0)
    assert not service.pending


def test_closed_connection_loses_its_registrations() -> None:
    service = RenewalService()
    a, b = Peer("a"), Peer("b")
    service.register(a, 7)
    service.register(a, 8)
    service.register(b, 7)
    service.connection_lost(a)
    assert service.listeners == {7: [b]}


def test_a_primary_that_cannot_take_it_now_hands_the_attempt_to_a_backup() -> None:
    """A paused primary (its peer is not reading) does not cost a whole resend interval."""
    service = RenewalService(send_timeout=0.5, resend_interval=1.0, resend_attempts=3)
    primary, backup = Peer("primary", accepts=False), Peer("backup")
    service.register(primary, 7)
    service.register(backup, 7)
    service.submit({starved(): CREDIT}, T0)
    assert backup.got == [(1, 1)] and primary.got == []
    assert service.counts["sent"] == 1 and service.counts["undeliverable"] == 0
