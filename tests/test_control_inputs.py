"""Bad input to the test controls is refused and harms nothing: a clock moved to the end of
time, a fault rule whose fields have the wrong type (issue: each was a server outage)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

import cc_client
from cc_client import ChargeableItem
from cc_client.admin import main as admin_main
from cc_server.clock import MAX_STEP, MAX_TIME, ClockError
from cc_server.config import ConfigError, ServerConfig, fault_tables
from cc_server.faults import FaultError, Faults, Rule
from cc_server.testing import ManualClock, ServerThread, running_server
from protocol import codec
from protocol import messages as m
from tests.mockkit import T0

pytestmark = pytest.mark.timeout(30)

T = m.MsgType
DAY = 86_400.0
END = dt.datetime.fromtimestamp(MAX_TIME, dt.UTC)


async def _start(client: cc_client.Client, session: str, ttl: float) -> cc_client.SessionResult:
    op = client.create_session_start_operation(user_id="u", service_id="DATA",
                                               session_id=session)
    op.prepare_reserve("r-1", ChargeableItem("data", {"volume": 100}), ttl=ttl)
    return await op.execute()


# -------------------------------------------------------------------- the clock's range

async def test_a_clock_set_past_the_range_is_refused_and_the_clock_still_reads() -> None:
    async with running_server(clock=ManualClock(T0)) as server, \
            cc_client.connect(server.url) as client:
        with pytest.raises(cc_client.InvalidRequest) as info:
            await client.admin.clock_set("9999-12-31T23:00:00Z")
        assert "9998-01-01T00:00:00Z" in info.value.message
        shown = await client.admin.clock_get()
        assert shown["time"] == dt.datetime.fromtimestamp(T0, dt.UTC) and server.clock() == T0
    server.check()                       # no internal error on the way


async def test_the_largest_move_leaves_room_for_every_derived_time(tmp_path: Path) -> None:
    """At the end of the range, an advance of 400 days is refused, changing nothing, and a
    start with a TTL of 1 day (or 400) works, as do its expiry and a restart."""
    async with running_server(clock=ManualClock(T0), data_dir=str(tmp_path),
                              dedup_window=365 * DAY) as server, \
            cc_client.connect(server.url) as client:
        await client.admin.create_subscriber("u", D("10.00"))
        assert await client.admin.clock_set(END) == END
        with pytest.raises(cc_client.InvalidRequest) as info:
            await client.admin.clock_advance(MAX_STEP)
        assert "9998-01-01T00:00:00Z" in info.value.message
        assert (await client.admin.clock_get())["time"] == END and server.clock() == MAX_TIME
        assert (await _start(client, "day", DAY)).ok
        assert (await _start(client, "long", MAX_STEP)).ok
        await client.admin.top_up("u", D(1))                     # an op in the window
        [session] = await client.admin.find_sessions(session_id="long")
        assert session.reservations[0].expires_at == END + dt.timedelta(seconds=MAX_STEP)
        assert len(await client.admin.transactions(user_id="u")) == 3
        assert "engine" in await client.admin.stats()
    server.check()
    async with running_server(clock=ManualClock(T0), data_dir=str(tmp_path),
                              dedup_window=365 * DAY) as server, \
            cc_client.connect(server.url) as client:
        assert server.clock() == MAX_TIME
        assert len(await client.admin.find_sessions(user_id="u")) == 2
        assert (await client.admin.get_subscriber("u")).reserved == D("2.00")
    server.check()


def test_a_manual_clock_outside_the_range_refuses_before_it_moves() -> None:
    moves: list[float] = []
    clock = ManualClock(MAX_TIME - 10)
    clock.on_move = moves.append
    with pytest.raises(ClockError, match="stays between"):
        clock.advance(11)
    for when in (MAX_TIME + 0.001, float("nan"), float("inf")):
        with pytest.raises(ClockError, match="stays between"):
            clock.set(when)
    assert clock() == MAX_TIME - 10 and moves == []
    assert clock.advance(10) == MAX_TIME and moves == [MAX_TIME]
    for start in (MAX_TIME + 1, -1.0):
        with pytest.raises(ClockError):
            ManualClock(start)


# -------------------------------------------------------------------- fault rule field types

BAD_FIELDS: list[dict[str, Any]] = [
    {"user": 5}, {"session": True}, {"conn_user": 1.5}, {"service": 7}, {"kind": 1},
    {"listener": "3"}, {"listener": True}, {"times": True}, {"after": 1.5}, {"seconds": "1"},
    {"seed": 1.5}, {"probability": True}, {"scope": 0}, {"type": False}]


@pytest.mark.parametrize("bad", BAD_FIELDS, ids=lambda f: f"{next(iter(f))}")
async def test_a_rule_field_of_the_wrong_type_is_refused_on_the_wire(
        bad: dict[str, Any]) -> None:
    async with running_server(clock=ManualClock(T0)) as server, \
            cc_client.connect(server.url) as client:
        await client.admin.create_subscriber("u", D("10.00"))
        rule = {"action": "busy", **bad}
        msg_type, body = await client.call(*codec.encode_body(
            m.AdminRequest("fault_add", {"rule": rule}, b"op-1")))
        error = codec.unpack(body)
        assert msg_type == T.ERROR and error["code"] == "INVALID_REQUEST"
        assert next(iter(bad)) in error["message"]
        assert not list(server.faults)
        # no outage: starts and ADMIN commands that carry a user are served
        assert (await _start(client, "s-1", 60)).ok
        assert (await client.admin.get_subscriber("u")).reserved == D("1.00")
    server.check()


async def test_the_client_api_refuses_a_glob_that_is_a_number() -> None:
    async with running_server() as server, cc_client.connect(server.url) as client:
        await client.admin.create_subscriber("u", D("10.00"))
        with pytest.raises(cc_client.InvalidRequest, match="user must be a string"):
            await client.admin.faults.add("error", code="USER_UNKNOWN", user=5)
        with pytest.raises(cc_client.InvalidRequest, match="session must be a string"):
            await client.admin.faults.add("busy", session=False)
        assert await client.admin.faults.list() == []
        assert (await _start(client, "s-1", 60)).ok


def test_the_in_process_api_refuses_a_field_of_the_wrong_type() -> None:
    with ServerThread() as server:
        with pytest.raises(FaultError, match="user must be a string, not int"):
            server.faults.add(action="error", code="USER_UNKNOWN", user=5)
        with pytest.raises(FaultError, match="listener must be a whole number"):
            server.faults.add(Rule(action="busy", listener=True))
        assert not list(server.faults)
    faults = Faults()
    rule = Rule(action="busy")
    rule.session = 3  # type: ignore[assignment]
    with pytest.raises(FaultError, match="session must be a string"):
        faults.add(rule)
    assert not list(faults)


def test_the_config_file_refuses_a_field_of_the_wrong_type() -> None:
    assert ServerConfig(faults=({"action": "busy", "user": 5},)).problems() == [
        "faults[0]: user must be a string, not int 5"]
    with pytest.raises(ConfigError, match=r"faults\[1\]: seconds must be a number"):
        fault_tables([{"action": "busy"}, {"action": "delay", "seconds": "1"}])


def test_cc_admin_fault_add_refuses_bad_values_in_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    with ServerThread() as server:
        assert admin_main(["--server", server.url, "fault", "add", "--action", "busy",
                           "--listener", "three"]) == 2
        assert "--listener" in capsys.readouterr().err
        code = admin_main(["--server", server.url, "fault", "add", "--action", "busy",
                           "--probability", "2"])
        out = capsys.readouterr()
        assert code == 1 and "INVALID_REQUEST" in out.err and "probability" in out.err
        assert len(out.err.strip().splitlines()) == 1
        assert not list(server.faults)
