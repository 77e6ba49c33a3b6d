"""The operator's and test author's tools: record filters, fault rule handles, argument
names, and cc-admin's output (issue items 11, 12, 14)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

import cc_client
import cc_client.sync
from cc_client import ChargeableItem
from cc_client.admin import build_parser
from cc_client.admin import main as admin_main
from cc_client.admin_users import hash_password
from cc_server.pytest_plugin import marker_settings
from cc_server.testing import ManualClock, ServerThread
from tests.mockkit import mock_server, start, update

T0 = 1_800_000_000.0


def admin(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str]:
    code = admin_main(["--server", url, *argv])
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture(scope="module")
def live() -> Iterator[ServerThread]:
    """One server for the module (manual clock, record on); tests use their own ids."""
    with ServerThread(clock=ManualClock(T0), record=10_000) as server:
        yield server


# ------------------------------------------------------------------ item 11: record filters

async def test_user_and_session_filters_select_requests_and_their_replies() -> None:
    async with mock_server() as server, cc_client.connect(server.url) as client:
        await client.admin.create_subscriber("amy", D("10.00"))
        await start(client, "amy", "s-1")
        with pytest.raises(cc_client.SessionNotFound):
            await update(client, "amy", "s-none").execute()
        got = [(e.direction, e.type) for e in server.record.find(session="s-none")]
        assert got == [("in", "EXECUTE"), ("out", "ERROR")]
        by_user = [(e.direction, e.type) for e in server.record.find(user="amy")]
        assert by_user == [("in", "ADMIN"), ("out", "ADMIN_RESULT"),
                           ("in", "EXECUTE"), ("out", "EXECUTE_RESULT"),
                           ("in", "EXECUTE"), ("out", "ERROR")]
        wire = await client.admin.record(user="amy", direction="out")
        assert [e["type"] for e in wire] == ["ADMIN_RESULT", "EXECUTE_RESULT", "ERROR"]
        assert [e["type"] for e in await client.admin.record(kind="update")] == \
            ["EXECUTE", "ERROR"]
        # the old argument names still work
        assert await client.admin.record(session_id="s-none") == \
            await client.admin.record(session="s-none")
        server.record.verify(1, session_id="s-none")


def test_cc_admin_record_user_lists_the_replies_errors_included(
        live: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    with cc_client.sync.connect(live.url) as client:
        client.admin.create_subscriber("rec-bo", D("10.00"))
        with pytest.raises(cc_client.UserExists):
            client.admin.create_subscriber("rec-bo", D("10.00"))
    code, out = admin(capsys, live.url, "record", "--user", "rec-bo", "--json")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(e["direction"], e["type"]) for e in lines] == [
        ("in", "ADMIN"), ("out", "ADMIN_RESULT"), ("in", "ADMIN"), ("out", "ERROR")]
    assert lines[-1]["body"]["code"] == "USER_EXISTS"
    code, out = admin(capsys, live.url, "record", "--user", "rec-bo")
    assert code == 0 and "ERROR" in out and "ADMIN_RESULT" in out


# ------------------------------------------------------------------ item 14: one kind of rule

async def test_client_fault_rule_is_a_handle_like_the_in_process_one() -> None:
    async with mock_server() as server, cc_client.connect(server.url) as client:
        await client.admin.create_subscriber("cy", D("10.00"))
        async with await client.admin.faults.add("busy", user="cy", kind="start") as rule:
            assert rule.id == int(rule) and rule.action == "busy"
            assert rule.fields["user"] == "cy"
            assert [r["id"] for r in await client.admin.faults.list()] == [rule.id]
        assert await client.admin.faults.list() == []
        rule = await client.admin.faults.add(action="busy", user_id="cy", session_id="s-*")
        assert (rule.fields["user"], rule.fields["session"]) == ("cy", "s-*")
        assert await rule.remove() and not await rule.remove()
        # the in-process handle: the same names
        with server.faults.add(action="busy", user_id="cy") as handle:
            assert handle.id == int(handle) and handle.action == "busy"
            assert handle.fields["user"] == "cy"
        assert not handle.remove()


def test_blocking_client_fault_rule_is_a_context_manager(live: ServerThread) -> None:
    with cc_client.sync.connect(live.url) as client:
        client.admin.create_subscriber("rule-di", D("1.00"))
        with client.admin.faults.add("error", code="USER_UNKNOWN", type="ADMIN",
                                     user="rule-di") as rule:
            with pytest.raises(cc_client.UserUnknown):
                client.admin.get_subscriber("rule-di")
            assert [r["id"] for r in client.admin.faults.list()] == [rule]
        assert client.admin.get_subscriber("rule-di").balance == D("1.00")
        got = client.admin.record(user="rule-di", direction="out")
        assert [e["type"] for e in got] == ["ADMIN_RESULT", "ERROR", "ADMIN_RESULT"]


# ------------------------------------------------------------------ item 12: one JSON shape

def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
            ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _leaves(sub, (*path, name))


def test_every_cc_admin_command_has_json() -> None:
    leaves = dict(_leaves(build_parser()))
    assert len(leaves) > 20
    missing = [" ".join(path) for path, parser in leaves.items()
               if not any("--json" in a.option_strings for a in parser._actions)]
    assert missing == []


def json_lines(out: str) -> list[dict[str, Any]]:
    """Every line of `out` is one JSON object."""
    objects = [json.loads(line) for line in out.splitlines()]
    assert objects and all(isinstance(o, dict) for o in objects), out
    return objects


def test_json_is_json_lines_on_every_server_command(
        live: ServerThread, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with cc_client.sync.connect(live.url) as client:
        client.admin.create_subscriber("js-1", D("10.00"), counters={"free_data": 5})
        op = client.create_session_start_operation(user_id="js-1", service_id="DATA",
                                                   session_id="js-s1")
        op.set_reservation_renewal_listener_id(7)
        op.prepare_reserve("r-1", ChargeableItem("data", {"volume": 10}), ttl=600)
        assert op.execute().ok
    rule_id = 0
    for command in (["subscriber", "show", "js-1"], ["subscriber", "top-up", "js-1", "1"],
                 ["subscriber", "list", "--prefix", "js-"],
                 ["subscriber", "adjust", "js-1", "1", "--reason", "r"],
                 ["subscriber", "counter", "set", "js-1", "free_data", "9"],
                 ["sessions", "list", "--user", "js-1"], ["sessions", "show", "js-s1"],
                 ["transactions", "--user", "js-1"], ["stats"],
                 ["request-renewal", "js-s1", "r-1"],
                 ["fault", "add", "--action", "busy", "--user", "nobody"],
                 ["fault", "list"], ["fault", "remove", "RULE"], ["fault", "clear"],
                 ["record", "--user", "js-1", "--limit", "2"],
                 ["sessions", "cancel", "js-s1"],
                 ["subscriber", "counter", "reset", "js-1", "free_data"],
                 ["subscriber", "create", "js-2", "--balance", "1"],
                 ["subscriber", "delete", "js-2"],
                 ["clock", "advance", "1"], ["clock", "set", "2030-01-01T00:00:00Z"],
                 ["clock", "show"]):
        argv = [str(rule_id) if a == "RULE" else a for a in command]
        code, out = admin(capsys, live.url, *argv, "--json")
        if argv[-1] == "js-2" and argv[1] == "delete":
            assert code == 0 and out == ""      # nothing released: no line
            continue
        assert code == 0, (argv, out)
        if argv[:2] == ["fault", "add"]:
            rule_id = json_lines(out)[0]["id"]
        json_lines(out)
    users = tmp_path / "users.toml"
    users.write_text(f'[users.op]\npassword = "{hash_password("pw")}"\nroles = ["admin"]\n')
    assert admin_main(["user", "list", "--users-file", str(users), "--json"]) == 0
    assert json_lines(capsys.readouterr().out) == [{"user": "op", "roles": ["admin"]}]


def test_clock_show_names_the_clock(live: ServerThread,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out = admin(capsys, live.url, "clock", "show")
    assert code == 0 and out.strip().endswith("(manual clock)")
    code, out = admin(capsys, live.url, "clock", "show", "--json")
    (shown,) = json_lines(out)
    assert (shown["mode"], shown["manual"]) == ("manual", True)
    with ServerThread(clock_speed=60.0) as fast, ServerThread() as wall:
        code, out = admin(capsys, fast.url, "clock", "show")
        assert out.strip().endswith("(clock at 60 times real time)")
        (shown,) = json_lines(admin(capsys, fast.url, "clock", "show", "--json")[1])
        assert (shown["mode"], shown["speed"]) == ("scaled", 60.0)
        assert admin(capsys, wall.url, "clock", "show")[1].strip().endswith("(wall clock)")


def test_fault_list_shows_each_rules_scope(live: ServerThread,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    admin(capsys, live.url, "fault", "clear")
    admin(capsys, live.url, "fault", "add", "--action", "error", "--code", "USER_UNKNOWN",
          "--scope", "subrequest", "--user", "nobody-1")
    admin(capsys, live.url, "fault", "add", "--action", "error", "--code", "USER_UNKNOWN",
          "--user", "nobody-2")
    admin(capsys, live.url, "fault", "add", "--action", "close-after", "--user", "nobody-3")
    code, out = admin(capsys, live.url, "fault", "list")
    lines = out.splitlines()
    assert code == 0 and "SCOPE" in lines[0].split()
    scopes = [line.split()[2] for line in lines[1:]]
    assert scopes == ["subrequest", "container", "connection"]
    admin(capsys, live.url, "fault", "clear")


# ------------------------------------------------------------------ item 13: the pytest plugin

@pytest.mark.cc_server(clock=T0 + 5)
def test_the_marker_takes_a_clock(charging_server: ServerThread,
                                  charging_client: cc_client.sync.SyncClient) -> None:
    assert charging_server.clock() == T0 + 5
    assert charging_client.admin.clock_get()["manual"]
    # the fixture names leave the package usable in the test
    assert isinstance(charging_client, cc_client.sync.SyncClient)


@pytest.mark.cc_server(clock="wall")
def test_the_marker_takes_the_wall_clock(charging_server: ServerThread) -> None:
    with pytest.raises(RuntimeError, match="not manual"):
        charging_server.advance(1)


def test_the_old_fixture_names_are_the_same_fixtures(
        cc_server: ServerThread, charging_server: ServerThread) -> None:
    assert cc_server is charging_server


class _Node:
    def __init__(self, **kwargs: Any) -> None:
        self.marks = [pytest.mark.cc_server(**kwargs).mark]

    def iter_markers(self, name: str) -> list[Any]:
        return self.marks


class _Request:
    def __init__(self, **kwargs: Any) -> None:
        self.node = _Node(**kwargs)


def test_a_misspelt_marker_key_is_named_with_the_valid_ones() -> None:
    with pytest.raises(TypeError) as caught:
        marker_settings(_Request(dedup_windw=60))   # type: ignore[arg-type]
    text = str(caught.value)
    assert "'dedup_windw'" in text and "did you mean 'dedup_window'" in text
    assert "valid settings:" in text and "clock" in text and "heartbeat" in text
    with pytest.raises(TypeError, match="clock must be"):
        marker_settings(_Request(clock="fast"))     # type: ignore[arg-type]
    clock, settings = marker_settings(_Request(clock="manual", heartbeat=1.0))  # type: ignore[arg-type]
    assert isinstance(clock, ManualClock) and settings["heartbeat"] == 1.0


# ------------------------------------------------------------------ set_counter units

async def test_set_counter_takes_int_units_as_section_3_says() -> None:
    """PROTOCOL.md section 3: counter units are decimal or int; set_counter took only
    decimals. An int is taken as the same number of units."""
    import msgpack

    from protocol import codec
    from protocol import messages as m
    body = msgpack.packb({"cmd": "set_counter", "args": {"user": "u", "counter": "c",
                                                          "units": 7}})
    msg = codec.decode_body(m.MsgType.ADMIN, body)
    assert isinstance(msg, m.AdminRequest) and msg.args["units"] == D(7)
    assert type(msg.args["units"]) is D
    async with mock_server() as server, cc_client.connect(server.url) as client:
        await client.admin.create_subscriber("cnt-1", D("1.00"))
        sub = await client.admin.set_counter("cnt-1", "free_sms", 7)
        assert sub.counters == {"free_sms": D(7)}
