"""Test controls over the wire: a real cc-server process, cc-admin and the client."""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal as D
from pathlib import Path

import pytest

import cc_client
import cc_client.sync
from cc_client import ChargeableItem
from cc_client.admin import main as admin_main
from cc_client.admin_users import hash_password
from cc_server.app import config_from_args, startup_line, startup_warnings
from cc_server.config import ConfigError, load_file
from cc_server.server import ChargingServer
from tests.serverproc import server_process


def admin(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str]:
    code = admin_main(["--server", url, *argv])
    out = capsys.readouterr()
    return code, out.out + out.err


def reserve(client: cc_client.sync.SyncClient, user: str, session: str, ttl: int) -> None:
    op = client.create_session_start_operation(user_id=user, service_id="DATA",
                                               session_id=session)
    op.prepare_reserve("rg-1", ChargeableItem("data", {"volume": 100}), ttl=ttl)
    assert op.execute().ok


def test_a_30_minute_ttl_expires_on_cc_admin_clock_advance(
        capsys: pytest.CaptureFixture[str]) -> None:
    with server_process("--clock", "manual", "--record", "100") as sp, \
            cc_client.sync.connect(sp.url) as client:
        client.admin.create_subscriber("gw-user", D("10.00"))
        reserve(client, "gw-user", "s-1", ttl=1800)
        before = client.admin.clock_get()["time"]
        assert admin(capsys, sp.url, "clock", "advance", "1799")[0] == 0
        assert client.admin.get_subscriber("gw-user").reserved == D("1.00")
        code, out = admin(capsys, sp.url, "clock", "advance", "1")
        assert code == 0 and out.strip().endswith("Z")
        assert client.admin.get_subscriber("gw-user").reserved == D("0.00")
        assert client.admin.clock_get()["time"] - before == dt.timedelta(seconds=1800)
        code, out = admin(capsys, sp.url, "clock", "set", "2000-01-01T00:00:00Z")
        assert code == 1 and "INVALID_REQUEST" in out and "backwards" in out
        code, out = admin(capsys, sp.url, "record", "--session", "s-1", "--jsonl")
        lines = [json.loads(line) for line in out.splitlines()]
        assert [(e["direction"], e["type"]) for e in lines] == [("in", "EXECUTE"),
                                                               ("out", "EXECUTE_RESULT")]


def test_cc_admin_fault_add_list_remove_clear(capsys: pytest.CaptureFixture[str]) -> None:
    with server_process() as sp, cc_client.sync.connect(sp.url, request_timeout=0.5) as c:
        c.admin.create_subscriber("alice-1", D("10.00"))
        reserve(c, "alice-1", "s-1", ttl=600)
        code, out = admin(capsys, sp.url, "fault", "add", "--user", "alice*", "--kind",
                          "update", "--action", "drop-reply", "--times", "1")
        assert code == 0 and out.strip() == "1"
        op = c.create_session_update_operation(user_id="alice-1", service_id="DATA",
                                               session_id="s-1")
        op.prepare_confirm("rg-1", ChargeableItem("data", {"volume": 20}))
        with pytest.raises(cc_client.CommunicationFailure):
            op.execute()                       # the reply was dropped
        assert op.execute().ok                 # the retry gets the stored outcome
        assert c.admin.get_subscriber("alice-1").balance == D("9.80")
        code, out = admin(capsys, sp.url, "fault", "list", "--json")
        rules = [json.loads(line) for line in out.splitlines()]
        assert [(r["id"], r["action"], r["user"], r["fired"]) for r in rules] == \
            [(1, "drop-reply", "alice*", 1)]
        assert "drop-reply" in admin(capsys, sp.url, "fault", "list")[1]
        assert admin(capsys, sp.url, "fault", "add", "--action", "busy")[1].strip() == "2"
        assert admin(capsys, sp.url, "fault", "remove", "1")[0] == 0
        assert admin(capsys, sp.url, "fault", "remove", "1")[0] == 1
        assert admin(capsys, sp.url, "fault", "clear")[1].strip() == "removed 1 fault rule(s)"
        code, out = admin(capsys, sp.url, "fault", "add", "--action", "explode")
        assert code == 1 and "INVALID_REQUEST" in out
        code, out = admin(capsys, sp.url, "record")
        assert code == 1 and "--record" in out     # off by default


def test_no_test_controls_forbids_them_and_says_so(capsys: pytest.CaptureFixture[str]
                                                   ) -> None:
    with server_process("--no-test-controls") as sp:
        assert "test controls off" in sp.first_line
        for argv in (["fault", "list"], ["clock", "show"], ["record"],
                     ["fault", "add", "--action", "busy"]):
            code, out = admin(capsys, sp.url, *argv)
            assert code == 1 and "FORBIDDEN" in out, argv
        with cc_client.sync.connect(sp.url) as client, pytest.raises(cc_client.Forbidden):
            client.admin.faults.add("busy")


async def test_a_public_server_with_users_warns_while_test_controls_are_on(
        tmp_path: Path) -> None:
    users = tmp_path / "users.toml"
    users.write_text(f'[users.op]\npassword = "{hash_password("pw")}"\nroles = ["admin"]\n')
    config, _ = config_from_args(["--host", "0.0.0.0", "--users", str(users)])
    server = ChargingServer(config)
    assert any("test controls are on" in w for w in startup_warnings(server))
    assert "test controls off" not in startup_line("0.0.0.0", 1, server)
    config, _ = config_from_args(["--host", "0.0.0.0", "--users", str(users),
                                  "--no-test-controls"])
    server = ChargingServer(config)
    assert not any("test controls" in w for w in startup_warnings(server))
    assert "test controls off" in startup_line("0.0.0.0", 1, server)


def test_faults_of_the_config_file_are_loaded_at_start(tmp_path: Path) -> None:
    config = tmp_path / "cc.toml"
    config.write_text('record = 50\n\n[[faults]]\naction = "error"\ncode = "USER_UNKNOWN"\n'
                      'type = "ADMIN"\nuser = "ghost*"\n')
    with server_process("--config", str(config)) as sp, \
            cc_client.sync.connect(sp.url) as client:
        with pytest.raises(cc_client.UserUnknown, match="injected by fault rule 1"):
            client.admin.create_subscriber("ghost-1", D("1.00"))
        rules = client.admin.faults.list()
        assert [(r["action"], r["fired"]) for r in rules] == [("error", 1)]
    config.write_text('[[faults]]\naction = "explode"\n')
    with pytest.raises(ConfigError, match=r"faults\[0\]: action must be one of"):
        load_file(str(config))


def test_recovery_restores_a_manual_clock_and_the_state(tmp_path: Path) -> None:
    args = ("--clock", "manual", "--data-dir", str(tmp_path))
    with server_process(*args) as sp:
        with cc_client.sync.connect(sp.url) as client:
            client.admin.create_subscriber("rex", D("10.00"))
            reserve(client, "rex", "s-1", ttl=600)
            client.admin.faults.add("error", code="CREDIT_LIMIT_REACHED",
                                    scope="subrequest", kind="update")
            op = client.create_session_update_operation(user_id="rex", service_id="DATA",
                                                        session_id="s-1")
            op.prepare_confirm_and_reserve("rg-1", ChargeableItem("data", {"volume": 20}),
                                           ChargeableItem("data", {"volume": 100}), ttl=-1)
            assert op.execute()["rg-1"].error is not None   # injected, unapplied
            moved = client.admin.clock_advance(3600.0)      # the TTL ran out
            before = client.admin.get_subscriber("rex")
        sp.kill9()
        sp.start()
        with cc_client.sync.connect(sp.url) as client:
            shown = client.admin.clock_get()
            assert shown["manual"] and shown["time"] >= moved
            assert client.admin.get_subscriber("rex") == before
            assert before.reserved == D("0.00")
            assert client.admin.faults.list() == []         # rules are not state


def test_clock_speed_runs_the_clock_faster() -> None:
    with server_process("--clock-speed", "1000") as sp, \
            cc_client.sync.connect(sp.url) as client:
        first = client.admin.clock_get()
        time.sleep(0.05)
        second = client.admin.clock_get()
        assert not first["manual"]
        assert (second["time"] - first["time"]).total_seconds() >= 40
