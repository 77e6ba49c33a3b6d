"""Every state-changing ADMIN command carries an operation id: a retry after a lost reply
is answered from the stored outcome (issue: clock moves, fault rules, record clear and
renewal requests were applied twice), and a refused command is not stored."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

import cc_client
import cc_client.sync
from cc_client import RenewalNotification
from cc_server.testing import ManualClock, TestServer, running_server
from protocol import codec
from protocol import messages as m
from protocol.frames import Frame
from tests.mockkit import T0, start
from tests.netfakes import Proxy, wait_until

pytestmark = pytest.mark.timeout(30)

T = m.MsgType
LISTENER = 7
Setup = Callable[[TestServer, cc_client.Client], Awaitable[Any]]
Run = Callable[[cc_client.Client, Any], Awaitable[Any]]
Check = Callable[[TestServer, cc_client.Client, Any, Any], Awaitable[None]]


class CutOnce:
    """Cut the connection instead of forwarding the next ADMIN reply, once armed."""

    def __init__(self) -> None:
        self.armed = False
        self.on_cut: Callable[[], None] | None = None

    def __call__(self, frame: Frame) -> bool:
        if not self.armed or frame.type not in (T.ADMIN_RESULT, T.ERROR):
            return False
        self.armed = False
        if self.on_cut is not None:
            self.on_cut()
        return True


# -------------------------------------------------------------------- one case per command

async def _nothing(server: TestServer, client: cc_client.Client) -> Any:
    return None


async def _advance(client: cc_client.Client, _: Any) -> Any:
    return await client.admin.clock_advance(100)


async def _advanced_once(server: TestServer, client: cc_client.Client, _: Any,
                         result: Any) -> None:
    assert server.clock() == T0 + 100          # not 200
    assert result == dt.datetime.fromtimestamp(T0 + 100, dt.UTC)


async def _other_operator_moves_on(server: TestServer, client: cc_client.Client) -> Any:
    # when the reply is lost, another operator moves the clock on: a clock_set sent
    # again would then be a move backwards (INVALID_REQUEST) though the first one worked
    return lambda: server.advance(50)


async def _set(client: cc_client.Client, _: Any) -> Any:
    return await client.admin.clock_set(dt.datetime.fromtimestamp(T0 + 10, dt.UTC))


async def _set_answered(server: TestServer, client: cc_client.Client, _: Any,
                        result: Any) -> None:
    assert result == dt.datetime.fromtimestamp(T0 + 10, dt.UTC)
    assert server.clock() == T0 + 60


async def _fault_add(client: cc_client.Client, _: Any) -> Any:
    return await client.admin.faults.add("busy", kind="update", times=1)


async def _one_rule(server: TestServer, client: cc_client.Client, _: Any,
                    result: Any) -> None:
    assert len(list(server.faults)) == 1      # not two


async def _a_rule(server: TestServer, client: cc_client.Client) -> Any:
    return server.faults.add(action="busy", kind="update", times=1).id


async def _fault_remove(client: cc_client.Client, rule_id: Any) -> Any:
    return await client.admin.faults.remove(rule_id)


async def _removed(server: TestServer, client: cc_client.Client, _: Any,
                   result: Any) -> None:
    assert result is True and not list(server.faults)


async def _two_rules(server: TestServer, client: cc_client.Client) -> Any:
    server.faults.add(action="busy", kind="update", times=1)
    server.faults.add(action="busy", kind="stop", times=1)


async def _fault_clear(client: cc_client.Client, _: Any) -> Any:
    return await client.admin.faults.clear()


async def _cleared_two(server: TestServer, client: cc_client.Client, _: Any,
                       result: Any) -> None:
    assert result == 2 and not list(server.faults)


async def _recorded(server: TestServer, client: cc_client.Client) -> Any:
    await client.admin.create_subscriber("rec", D("1.00"))
    record = server.record
    assert record is not None
    return len(record.entries)


async def _record_clear(client: cc_client.Client, _: Any) -> Any:
    return await client.admin.record_clear()


async def _cleared_all(server: TestServer, client: cc_client.Client, held: Any,
                       result: Any) -> None:
    assert held >= 2 and result == held      # not 0, the count of the second clear


async def _listening(server: TestServer, client: cc_client.Client) -> Any:
    seen: list[RenewalNotification] = []

    async def on_renewal(note: RenewalNotification) -> None:
        seen.append(note)

    listener = await cc_client.connect(server.url).__aenter__()
    await listener.register_reservation_renewal_listener(LISTENER, on_renewal)
    await client.admin.create_subscriber("ann", D("10.00"))
    assert (await start(listener, "ann", "s-1", ttl=600, listener=LISTENER)).ok
    return listener, seen


async def _request_renewal(client: cc_client.Client, state: Any) -> Any:
    return await client.admin.request_renewal("s-1", "rg-1")


async def _notified_once(server: TestServer, client: cc_client.Client, state: Any,
                         result: Any) -> None:
    listener, seen = state
    try:
        assert await wait_until(lambda: len(seen) >= 1, 2.0)
        await asyncio.sleep(0.1)                     # a second one would be here by now
        assert len(seen) == 1, seen
        assert server.server.renewal.counts["created"] == 1
    finally:
        await listener.close()


CASES: dict[str, tuple[Setup, Run, Check]] = {
    "clock_advance": (_nothing, _advance, _advanced_once),
    "clock_set": (_other_operator_moves_on, _set, _set_answered),
    "fault_add": (_nothing, _fault_add, _one_rule),
    "fault_remove": (_a_rule, _fault_remove, _removed),
    "fault_clear": (_two_rules, _fault_clear, _cleared_two),
    "record_clear": (_recorded, _record_clear, _cleared_all),
    "request_renewal": (_listening, _request_renewal, _notified_once),
}


def test_every_state_changing_admin_command_is_a_case_here() -> None:
    """The one list (protocol.codec.MUTATING_ADMIN) holds every command tested here; the
    subscriber commands have their own exactly-once tests (test_subscriber_admin.py)."""
    assert set(CASES) <= codec.MUTATING_ADMIN
    subscriber = {"create_subscriber", "top_up", "cancel_session", "delete_subscriber",
                  "adjust", "set_counter", "reset_counter", "set_plan"}
    assert set(CASES) | subscriber == codec.MUTATING_ADMIN
    read_only = set(codec.ADMIN_COMMANDS) - codec.MUTATING_ADMIN
    assert read_only == {"get_subscriber", "list_subscribers", "find_sessions",
                         "transactions", "stats", "catalog", "fault_list", "record_get",
                         "clock_get"}


@pytest.mark.parametrize("command", sorted(CASES))
async def test_a_retry_after_a_cut_connection_is_answered_from_the_stored_outcome(
        command: str) -> None:
    setup, run, check = CASES[command]
    cut = CutOnce()
    async with running_server(clock=ManualClock(T0), record=1000) as server, \
            Proxy(server.host, server.port, cut) as proxy, \
            cc_client.connect(proxy.url, request_timeout=5.0) as client:
        state = await setup(server, client)
        if command == "clock_set":
            cut.on_cut, state = state, None
        cut.armed = True
        result = await run(client, state)
        assert proxy.cuts == 1 and client.reconnects == 1
        sent = [f for f in proxy.requests if f.type == T.ADMIN
                and codec.unpack(f.body)["cmd"] == command]
        assert len(sent) == 2 and sent[0].body == sent[1].body     # the same op, re-sent
        assert "op" in codec.unpack(sent[0].body)
        await check(server, client, state, result)


async def test_the_blocking_client_reuses_the_op_id_of_its_own_retry_too() -> None:
    cut = CutOnce()
    async with running_server(clock=ManualClock(T0)) as server, \
            Proxy(server.host, server.port, cut) as proxy:
        def operator() -> list[Any]:
            with cc_client.sync.connect(proxy.url, request_timeout=5.0) as client:
                cut.armed = True
                moved = client.admin.clock_advance(100)
                cut.armed = True
                added = client.admin.faults.add("busy", kind="stop", times=1)
                return [moved, added]

        moved, _ = await asyncio.to_thread(operator)
        assert proxy.cuts == 2
        assert server.clock() == T0 + 100 and moved == dt.datetime.fromtimestamp(
            T0 + 100, dt.UTC)
        assert len(list(server.faults)) == 1


async def test_a_clock_move_is_still_answered_from_its_outcome_after_a_restart(
        tmp_path: Path) -> None:
    request = codec.encode_body(m.AdminRequest("clock_advance", {"seconds": 100.0},
                                               b"move-1"))
    async with running_server(clock=ManualClock(T0), data_dir=str(tmp_path)) as server, \
            cc_client.connect(server.url) as client:
        first = await client.call(*request)
        assert first[0] == T.ADMIN_RESULT and server.clock() == T0 + 100
    async with running_server(clock=ManualClock(T0), data_dir=str(tmp_path)) as server, \
            cc_client.connect(server.url) as client:
        assert server.clock() == T0 + 100
        assert await client.call(*request) == first        # not moved again
        assert server.clock() == T0 + 100


# -------------------------------------------------------------------- refusals are not stored

async def _call(client: cc_client.Client, command: str, args: dict[str, Any],
                op: bytes) -> tuple[int, Any]:
    msg_type, body = await client.call(*codec.encode_body(m.AdminRequest(command, args, op)))
    return msg_type, codec.unpack(body)


@pytest.mark.parametrize(("command", "bad", "good"), [
    ("top_up", {"user": "u", "amount": D(0)}, {"user": "u", "amount": D(5)}),
    ("adjust", {"user": "u", "amount": D(1), "reason": "   "},
     {"user": "u", "amount": D(1), "reason": "goodwill"}),
    ("top_up", {"user": "nobody", "amount": D(5)}, {"user": "u", "amount": D(5)}),
    ("set_counter", {"user": "u", "counter": "free", "units": D(-1)},
     {"user": "u", "counter": "free", "units": D(3)}),
    ("fault_add", {"rule": {"action": "busy", "user": 5}}, {"rule": {"action": "busy",
                                                                     "user": "x*"}}),
    ("clock_advance", {"seconds": 500 * 86400.0}, {"seconds": 60.0}),
])
async def test_a_refused_command_is_not_stored_so_the_corrected_one_is_accepted(
        command: str, bad: dict[str, Any], good: dict[str, Any], tmp_path: Path) -> None:
    async with running_server(clock=ManualClock(T0), data_dir=str(tmp_path)) as server, \
            cc_client.connect(server.url) as client:
        await client.admin.create_subscriber("u", D("10.00"))
        msg_type, body = await _call(client, command, bad, b"op-1")
        assert msg_type == T.ERROR, body
        code = body["code"]
        # the very same request is run again (it is not a stored outcome either)
        assert await _call(client, command, bad, b"op-1") == (msg_type, body)
        msg_type, body = await _call(client, command, good, b"op-1")
        assert msg_type == T.ADMIN_RESULT, body                  # not OPERATION_ID_REUSED
        assert code != "OPERATION_ID_REUSED"
        again = await _call(client, command, good, b"op-1")      # now it is stored
        assert again == (msg_type, body)
        balance = (await client.admin.get_subscriber("u")).balance
    if command == "fault_add":
        return                     # fault rules live in memory only
    # and so after a restart (the log replays the refusal, still not storing it)
    async with running_server(clock=ManualClock(T0), data_dir=str(tmp_path)) as server, \
            cc_client.connect(server.url) as client:
        assert await _call(client, command, good, b"op-1") == again
        assert (await client.admin.get_subscriber("u")).balance == balance
        msg_type, body = await _call(client, command, bad, b"op-1")
        assert body["code"] == "OPERATION_ID_REUSED"             # op-1 has its outcome
