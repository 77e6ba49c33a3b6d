"""Dispatch never falls through: an action, a container kind or a fault action it does not
know raises (an internal error), where it used to be handled as the last case it knew."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cc_server.dedup import OutcomeCache
from cc_server.dispatch import Dispatcher
from cc_server.engine import Engine
from cc_server.faults import Rule
from cc_server.renewal import RenewalService
from protocol import codec
from protocol import messages as m
from protocol.frames import Frame

T0 = 1_700_000_000.0


def engine_with_session() -> Engine:
    engine = Engine()
    engine.create_subscriber("u", Decimal(10), "EUR", {})
    item = m.ChargeableItem("data", {"volume": 1000})
    start = m.Execute(b"op-1", m.ContainerKind.START, "u", "DATA", "s", (
        m.SubRequest(m.Action.RESERVE, "r1", item=item, ttl=30),))
    assert engine.execute(start, T0).outcomes[0].error is None
    return engine


def snapshot(engine: Engine) -> tuple[object, ...]:
    return (engine.get_subscriber("u"), tuple(engine.transactions()),
            tuple(engine.find_sessions()))


def test_an_unknown_sub_request_action_raises_and_changes_nothing() -> None:
    engine = engine_with_session()
    before = snapshot(engine)
    bogus = m.SubRequest("confirm-and-reserve", "r1")   # type: ignore[arg-type]
    update = m.Execute(b"op-2", m.ContainerKind.UPDATE, "u", "DATA", "s", (bogus,))
    # compiled, the engine's typed code refuses the str itself (TypeError) before its check
    with pytest.raises((ValueError, TypeError)) as caught:
        engine.execute(update, T0 + 1)
    assert caught.type is TypeError or "unknown sub-request action" in str(caught.value)
    assert snapshot(engine) == before


def test_an_unknown_container_kind_raises_and_changes_nothing() -> None:
    engine = engine_with_session()
    before = snapshot(engine)
    odd = m.Execute(b"op-2", "restart", "u", "DATA", "s", ())   # type: ignore[arg-type]
    with pytest.raises((ValueError, TypeError)) as caught:
        engine.execute(odd, T0 + 1)
    assert caught.type is TypeError or "unknown container kind" in str(caught.value)
    assert snapshot(engine) == before


def test_a_fault_action_with_no_handling_is_an_internal_error_not_a_dropped_request(
) -> None:
    from cc_server.controls import Plan

    dispatcher = Dispatcher(Engine(), lambda: T0, RenewalService(), OutcomeCache())
    rule = Rule("drop-request")
    rule.action = "drop-everything"        # past the rule's own check: a new, unwired one
    frame = Frame(int(m.MsgType.LISTEN), 0, 5, codec.pack({"listener_id": 1}))
    with pytest.raises(ValueError, match="no handling before apply"):
        dispatcher._with_plan(None, m.Listen(1), frame, Plan(before=rule))  # type: ignore[arg-type]
    assert dispatcher.take_fault() is None   # nothing left for the connection to do
