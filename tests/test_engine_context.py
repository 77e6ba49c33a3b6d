"""The server applies containers in the engine's decimal context without swapping it per
container, on either event loop, and leaves its caller's decimal context alone."""

from __future__ import annotations

import asyncio
import decimal
from collections.abc import Callable
from decimal import Decimal as D

import pytest

import cc_client
from cc_server.clock import wall_clock_ms
from cc_server.engine import MONEY, Engine, engine_context
from cc_server.testing import running_server
from protocol import messages as m
from tests.conftest import new_subscriber

try:
    import uvloop
except ImportError:            # pragma: no cover - uvloop is optional where it does not build
    uvloop = None  # type: ignore[assignment]

LOOPS: list[Callable[[], asyncio.AbstractEventLoop]] = [asyncio.new_event_loop]
if uvloop is not None:
    LOOPS.append(uvloop.new_event_loop)


@pytest.mark.parametrize("new_loop", LOOPS, ids=lambda f: f.__module__)
def test_connections_run_in_the_engines_decimal_context_and_the_callers_is_untouched(
        new_loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
    seen: list[bool] = []

    def clock() -> float:      # the dispatcher reads the clock once per request
        seen.append(decimal.getcontext() is MONEY)
        return wall_clock_ms()

    async def main() -> decimal.Context:
        async with running_server(clock=clock) as server, \
                cc_client.connect(server.url) as client:
            user = await new_subscriber(client, "ctx")
            op = client.create_session_start_operation(user_id=user, service_id="DATA",
                                                       session_id="s1")
            op.prepare_reserve("r1", cc_client.ChargeableItem("data", {"volume": 100}),
                               ttl=60)
            assert (await op.execute())["r1"].reserve_result.amount == D("1.00")
        return decimal.getcontext()

    with asyncio.Runner(loop_factory=new_loop) as runner:
        callers = runner.run(main())
    assert seen and all(seen)
    assert callers is not MONEY and not callers.traps[decimal.Inexact]


def test_the_engine_swaps_the_context_in_and_back_out_when_it_is_not_set() -> None:
    engine = Engine()
    engine.create_subscriber("u", D("10"))
    item = m.ChargeableItem("data", {"volume": 100})
    sub = m.SubRequest(m.Action.RESERVE, "r1", item, ttl=60)
    before = decimal.getcontext()
    engine.execute(m.Execute(b"op1", m.ContainerKind.START, "u", "DATA", "s1", (sub,)), 1e9)
    assert decimal.getcontext() is before is not MONEY
    context = engine_context()
    result = context.run(engine.execute, m.Execute(b"op2", m.ContainerKind.START, "u", "DATA",
                                                    "s2", (sub,)), 1e9)
    assert result.outcomes[0].reserve_result is not None
    assert context.run(decimal.getcontext) is MONEY and decimal.getcontext() is before
