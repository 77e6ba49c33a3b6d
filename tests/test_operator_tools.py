"""The operator's and test author's tools: record filters, fault rule handles, argument
names, and cc-admin's output (issue items 11, 12, 14)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal as D

import pytest

import cc_client
import cc_client.sync
from cc_client.admin import main as admin_main
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
