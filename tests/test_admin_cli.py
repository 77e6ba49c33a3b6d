"""cc-admin against a live server: in-process `main(argv)` and real subprocess runs."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import itertools
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import cc_client
from cc_client import ChargeableItem, Resolution, admin
from cc_client.admin import main
from cc_server.server import ChargingServer
from cc_server.testing import ServerThread

_ids = itertools.count(1)
CC_ADMIN = Path(sys.executable).with_name("cc-admin")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """One server for the module; every test uses its own subscriber ids."""
    with ServerThread() as server:
        yield server.url


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CC_SERVER", "CC_USER", "CC_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def uid(prefix: str = "u") -> str:
    """A fresh id."""
    return f"{prefix}-{os.getpid()}-{next(_ids)}"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """main(argv) -> (exit status, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def _charge(url: str, user: str, open_session: str, charged_session: str) -> None:
    async with cc_client.connect(url) as client:
        for sid in (open_session, charged_session):
            op = client.create_session_start_operation(user_id=user, service_id="DATA",
                                                       session_id=sid)
            op.set_external_data(b"gw-ctx")
            op.set_reservation_renewal_listener_id(7)
            op.prepare_reserve("r-1", ChargeableItem("data", {"volume": 100}), ttl=300,
                               default_resolution=Resolution.CANCELED)
            assert (await op.execute())["r-1"].ok
        stop = client.create_session_stop_operation(user_id=user, service_id="DATA",
                                                    session_id=charged_session)
        stop.prepare_confirm("r-1", ChargeableItem("data", {"volume": 60}))
        assert (await stop.execute()).ok


def charged_user(url: str, capsys: pytest.CaptureFixture[str]) -> tuple[str, str, str]:
    """A subscriber (10.00 EUR) with one open session holding 1.00 and one charged 0.60."""
    user, open_sid, charged_sid = uid("alice"), uid("s-open"), uid("s-done")
    assert run(capsys, "--server", url, "subscriber", "create", user, "--balance", "10.00")[0] == 0
    asyncio.run(_charge(url, user, open_sid, charged_sid))
    return user, open_sid, charged_sid


def column(table: str, header: str) -> list[str]:
    """The cells of one column of an aligned table, found by the header's position."""
    lines = table.strip().splitlines()
    start = lines[0].index(header)
    return [line[start:].split()[0] if len(line) > start else "" for line in lines[1:]]


# ---------------------------------------------------------------------------- subscriber

def test_subscriber_create_show_top_up(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    user = uid()
    code, out, err = run(capsys, "--server", url, "subscriber", "create", user,
                         "--balance", "10.00", "--counter", "free_data=30",
                         "--counter", "free_seconds=120")
    assert (code, err) == (0, "")
    assert f"user:       {user}" in out and "balance:    10.00" in out
    assert column(out.split("\n\n")[1], "COUNTER") == ["free_data", "free_seconds"]

    code, out, _ = run(capsys, "--server", url, "subscriber", "top-up", user, "5.50")
    assert code == 0 and "balance:    15.50" in out and "available:  15.50" in out

    code, out, _ = run(capsys, "--server", url, "subscriber", "show", user, "--json")
    sub = json.loads(out)
    assert code == 0
    assert sub["balance"] == "15.50" and sub["currency"] == "EUR"
    assert sub["counters"] == {"free_data": "30", "free_seconds": "120"}


def test_exact_amounts_never_float(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    user = uid()
    assert run(capsys, "--server", url, "subscriber", "create", user, "--balance", "0.1")[0] == 0
    for _ in range(2):
        assert run(capsys, "--server", url, "subscriber", "top-up", user, "0.1")[0] == 0
    assert run(capsys, "--server", url, "subscriber", "top-up", user, "1e1")[0] == 0
    code, out, _ = run(capsys, "--server", url, "subscriber", "show", user, "--json")
    assert code == 0 and json.loads(out)["balance"] == "10.30"   # not 10.300000000000001


def test_global_options_after_the_command(url: str, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    user = uid()
    assert run(capsys, "subscriber", "create", user, "--balance", "3", "--server", url,
               "--timeout", "2")[0] == 0
    code, out, _ = run(capsys, "subscriber", "show", user, "--server", url)
    assert code == 0 and "balance:    3" in out
    code, out, _ = run(capsys, "subscriber", "--server", url, "show", user)
    assert code == 0
    # the environment gives the default server; an option still wins over it
    monkeypatch.setenv("CC_SERVER", url)
    assert run(capsys, "subscriber", "show", user)[0] == 0
    monkeypatch.setenv("CC_SERVER", f"127.0.0.1:{free_port()}")
    assert run(capsys, "stats", "--server", url)[0] == 0


# ---------------------------------------------------------------------------- sessions etc.

def test_sessions_transactions_renewal_cancel(url: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    user, open_sid, charged_sid = charged_user(url, capsys)
    srv = ("--server", url)

    code, out, _ = run(capsys, *srv, "sessions", "list", "--user", user)
    assert code == 0
    assert column(out, "SESSION") == [open_sid]          # the stopped session is gone
    assert column(out, "HELD") == ["1.00"]
    code, out, _ = run(capsys, *srv, "sessions", "list", "--user", user, "--limit", "5",
                       "--json")
    [session] = [json.loads(line) for line in out.splitlines()]
    assert session["session_id"] == open_sid and session["reservations"][0]["amount"] == "1.00"

    code, out, _ = run(capsys, "sessions", "show", open_sid, *srv)
    assert code == 0 and "external data:  'gw-ctx'" in out
    assert "data(volume=100)" in out and "CANCELED" in out

    # the charged session's journal: reserve 1.00, release 1.00, confirm 0.60
    code, out, _ = run(capsys, *srv, "transactions", "--session", charged_sid, "--json")
    entries = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [(e["kind"], e["amount"]) for e in entries] == [
        ("reserve", "1.00"), ("release", "1.00"), ("confirm", "0.60")]
    for e in entries:
        assert isinstance(e["amount"], str) and e["user_id"] == user
        when = dt.datetime.fromisoformat(e["time"])
        assert when.utcoffset() == dt.timedelta(0)
        assert abs(dt.datetime.now(dt.UTC) - when) < dt.timedelta(minutes=5)
    code, out, _ = run(capsys, *srv, "transactions", "--session", charged_sid)
    assert column(out, "KIND") == ["reserve", "release", "confirm"]
    assert column(out, "AMOUNT") == ["1.00", "1.00", "0.60"]

    code, out, err = run(capsys, *srv, "request-renewal", open_sid, "r-1")
    assert code == 0, err
    assert "renewal requested" in out
    code, _, err = run(capsys, *srv, "request-renewal", open_sid, "r-nope")
    assert code == 1 and err.startswith("error: RESERVATION_NOT_FOUND: ")
    code, _, err = run(capsys, *srv, "request-renewal", charged_sid, "r-1")   # stopped
    assert code == 1 and err.startswith("error: SESSION_NOT_FOUND: ")

    code, out, _ = run(capsys, *srv, "sessions", "cancel", open_sid)
    assert code == 0 and "released 1.00 EUR" in out
    code, out, _ = run(capsys, *srv, "subscriber", "show", user, "--json")
    sub = json.loads(out)
    assert [Decimal(sub[k]) for k in ("balance", "reserved", "available")] == [
        Decimal("9.40"), 0, Decimal("9.40")]
    code, _, err = run(capsys, *srv, "sessions", "cancel", open_sid)
    assert code == 1 and err.startswith("error: SESSION_NOT_FOUND: ")
    code, _, err = run(capsys, *srv, "sessions", "show", open_sid)
    assert code == 1 and err.startswith("error: SESSION_NOT_FOUND: ")
    code, out, _ = run(capsys, *srv, "sessions", "list", "--user", user)
    assert (code, out) == (0, "no sessions\n")

    code, out, _ = run(capsys, *srv, "transactions", "--user", user, "--json")
    kinds = [json.loads(line)["kind"] for line in out.splitlines()]
    assert kinds == ["reserve", "reserve", "release", "confirm", "release"]


def test_transactions_json_lines_are_paged(url: str, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    user = uid()
    assert run(capsys, "--server", url, "subscriber", "create", user, "--balance", "0")[0] == 0
    for amount in ("1", "2", "3", "4", "5"):
        assert run(capsys, "--server", url, "subscriber", "top-up", user, amount)[0] == 0
    monkeypatch.setattr(admin, "TX_PAGE", 2)
    code, out, _ = run(capsys, "--server", url, "transactions", "--user", user, "--json")
    assert [json.loads(x)["amount"] for x in out.splitlines()] == ["1.00", "2.00", "3.00",
                                                                 "4.00", "5.00"]
    code, out, _ = run(capsys, "--server", url, "transactions", "--user", user, "--json",
                       "--limit", "3")
    ids = [json.loads(x)["transaction_id"] for x in out.splitlines()]
    assert len(ids) == 3 and ids == sorted(ids)
    code, out, _ = run(capsys, "--server", url, "transactions", "--user", uid("nobody"))
    assert (code, out) == (0, "no transactions\n")


def test_stats(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--server", url, "stats", "--json")
    stats = json.loads(out)
    assert code == 0 and stats["engine"]["subscribers"] >= 0
    code, out, _ = run(capsys, "--server", url, "stats")
    assert code == 0 and column(out, "STATISTIC")[0] and "engine.subscribers" in out


# ---------------------------------------------------------------------------- failures

def test_refused_operations_exit_1(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    user = uid()
    code, out, err = run(capsys, "--server", url, "subscriber", "show", user)
    assert (code, out) == (1, "")
    assert err == f"error: USER_UNKNOWN: no subscriber {user!r}\n"
    assert run(capsys, "--server", url, "subscriber", "create", user, "--balance", "1")[0] == 0
    code, _, err = run(capsys, "--server", url, "subscriber", "create", user, "--balance", "1")
    assert code == 1 and err.startswith("error: USER_EXISTS: ")
    code, _, err = run(capsys, "--server", url, "subscriber", "top-up", user, "0")
    assert code == 1 and err.startswith("error: INVALID_REQUEST: ")


def test_authentication_and_roles_exit_1(url: str, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def authenticate(self: Any, user: str | None, password: str | None,
                     conn: Any) -> frozenset[str] | None:
        if user == "op" and password == "secret":
            return frozenset({"admin"})
        return frozenset() if user == "guest" else None

    monkeypatch.setattr(ChargingServer, "authenticate", authenticate)
    code, _, err = run(capsys, "--server", url, "--user", "op", "--password", "wrong", "stats")
    assert code == 1 and err.startswith("error: AUTHENTICATION_FAILED")
    assert run(capsys, "--server", url, "--user", "op", "--password", "secret", "stats")[0] == 0
    # after the command: --user is the login, except where it is a filter (--auth-user there)
    assert run(capsys, "stats", "--server", url, "--user", "op", "--password", "secret")[0] == 0
    code, _, err = run(capsys, "transactions", "--limit", "1", "--server", url,
                       "--auth-user", "op", "--password", "secret", "--user", uid())
    assert (code, err) == (0, "")
    monkeypatch.setenv("CC_USER", "guest")
    code, _, err = run(capsys, "--server", url, "stats")
    assert code == 1 and err.startswith("error: FORBIDDEN: ")


@pytest.mark.parametrize("argv", [
    ["subscriber", "top-up", "alice", "abc"],
    ["subscriber", "top-up", "alice", "1.5e999"],
    ["subscriber", "top-up", "alice", "NaN"],
    ["subscriber", "top-up", "alice", "0.0000000000000000001"],
    ["subscriber", "create", "alice"],
    ["subscriber", "create", "alice", "--balance", "1", "--counter", "free_data"],
    ["subscriber", "create", "alice", "--balance", "1", "--counter", "free_data=x"],
    ["sessions", "list", "--limit", "0"],
    ["transactions", "--limit", "many"],
    ["stats", "--timeout", "0"],
    ["subscriber"],
    ["frobnicate"],
    [],
    ["--server", "localhost:notaport", "stats"],
])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert "error:" in err


def test_unreachable_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--server", f"127.0.0.1:{free_port()}", "--timeout", "0.3",
                         "subscriber", "show", "alice")
    assert (code, out) == (3, "")
    assert err.startswith("error: COMMUNICATION_FAILURE: ")


@pytest.mark.parametrize("command", [
    ["subscriber", "create"], ["subscriber", "show"], ["subscriber", "top-up"],
    ["sessions", "list"], ["sessions", "show"], ["sessions", "cancel"], ["transactions"],
    ["stats"], ["request-renewal"], ["subscriber"], ["sessions"], [],
])
def test_help_has_an_example(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0
    assert "example" in out and f"  cc-admin {' '.join(command)}".rstrip() in out


# ---------------------------------------------------------------------------- real processes

def _proc(*argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CC_")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=env, check=False)


@pytest.mark.skipif(not CC_ADMIN.exists(), reason="cc-admin is not installed in this venv")
def test_console_script(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    user, _, charged_sid = charged_user(url, capsys)
    done = _proc(str(CC_ADMIN), "subscriber", "show", user, "--server", url)
    assert done.returncode == 0, done.stderr
    assert "balance:    9.40" in done.stdout and "reserved:   1.00" in done.stdout
    done = _proc(str(CC_ADMIN), "--server", url, "transactions", "--session", charged_sid,
                 "--json")
    assert done.returncode == 0, done.stderr
    assert sum(Decimal(json.loads(x)["amount"]) for x in done.stdout.splitlines()
               if json.loads(x)["kind"] == "confirm") == Decimal("0.60")
    done = _proc(str(CC_ADMIN), "--server", url, "subscriber", "top-up", user, "abc")
    assert done.returncode == 2 and "invalid amount 'abc'" in done.stderr


def test_python_dash_m(url: str) -> None:
    done = _proc(sys.executable, "-m", "cc_client.admin", "stats", "--json", "--server", url)
    assert done.returncode == 0, done.stderr
    assert "engine" in json.loads(done.stdout)
    done = _proc(sys.executable, "-m", "cc_client.admin", "subscriber", "show", uid(),
                 "--server", url)
    assert done.returncode == 1 and done.stderr.startswith("error: USER_UNKNOWN: ")
    done = _proc(sys.executable, "-m", "cc_client.admin", "--server",
                 f"127.0.0.1:{free_port()}", "--timeout", "0.3", "stats")
    assert done.returncode == 3 and "COMMUNICATION_FAILURE" in done.stderr


# ---------------------------------------------------------------------------- usage and help

def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """A parser and every sub-command parser under it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


@pytest.mark.parametrize("argv", [
    ["subscriber", "create", "x"],                  # --balance missing
    ["subscriber", "top-up", "x", "abc"],           # not an amount
    ["no-such-command"],
    ["user", "add"],
    [],
])
def test_usage_errors_are_the_error_and_a_pointer_to_help(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *argv)
    lines = err.splitlines()
    assert code == admin.EXIT_USAGE and out == ""
    assert len(lines) == 2 and "usage:" not in err, err
    assert lines[0].startswith("cc-admin") and ": error: " in lines[0]
    assert re.fullmatch(r"Run 'cc-admin[a-z -]*--help' for the usage\.", lines[1]), lines[1]


def test_help_says_each_default_once() -> None:
    for parser in _parsers(admin.build_parser()):
        for action in parser._actions:
            text = action.help or ""
            assert text.count("default") <= 1 and "(default: None)" not in text, text


def test_user_commands_say_sighup_applies_them(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "users.toml")
    monkeypatch.setattr(sys, "stdin", io.StringIO("secret\n"))
    code, out, _ = run(capsys, "user", "add", "gw", "--roles", "charging", "--password-stdin",
                       "--users-file", path)
    assert code == 0 and "send SIGHUP to cc-server, or restart it, to apply" in out
    assert "restart cc-server to apply" not in out
    code, out, _ = run(capsys, "user", "remove", "gw", "--users-file", path)
    assert code == 0 and "send SIGHUP to cc-server, or restart it, to apply" in out
    helps = {p.prog: re.sub(r"-\s+", "-", " ".join(p.format_help().split()))   # wrapped
             for p in _parsers(admin.build_parser())}
    for prog in ("cc-admin user", "cc-admin user add", "cc-admin user remove"):
        assert "send SIGHUP to cc-server, or restart it, to apply" in helps[prog], prog
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "To apply a change, send SIGHUP to cc-server, or restart it." in readme
    assert "Restart the server to apply changes" not in readme


@pytest.mark.parametrize("argv", [
    ["fault", "remove", "99999999999999999999999"],
    ["fault", "remove", "0"],
    ["fault", "add", "--action", "busy", "--every", "99999999999999999999999"],
    ["fault", "add", "--action", "busy", "--times", "0"],
    ["fault", "add", "--action", "busy", "--after", "-1"],
    ["fault", "add", "--action", "busy", "--seed", str(2**64)],
    ["fault", "add", "--action", "busy", "--listener", "128"],
    ["fault", "add", "--action", "busy", "--probability", "1.5"],
    ["fault", "add", "--action", "busy", "--probability", "nan"],
    ["fault", "add", "--action", "delay", "--seconds", "1e300"],
    ["fault", "add", "--action", "delay", "--seconds", "1", "--jitter", "-1"],
    ["record", "--limit", "-1"],
    ["record", "--limit", "0"],
    ["record", "--limit", str(2**64)],
    ["clock", "advance", "-5"],
    ["clock", "advance", "inf"],
    ["clock", "advance", str(401 * 86_400)],
    ["sessions", "list", "--limit", "0"],
    ["transactions", "--limit", "99999999999999999999999"],
    ["subscriber", "list", "--limit", "-3"],
    ["subscriber", "top-up", "x", "1E30"],
    ["subscriber", "create", "x", "--balance", "1", "--counter", "c=1E30"],
    ["--timeout", "0", "stats"],
])
def test_out_of_range_arguments_are_usage_errors(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 25 item 8: each was a traceback (or exit 0) before it reached a server."""
    code, out, err = run(capsys, "--server", f"127.0.0.1:{free_port()}", *argv)
    lines = err.splitlines()
    assert code == admin.EXIT_USAGE and out == "", (code, out, err)
    assert len(lines) == 2 and "Traceback" not in err, err
    assert lines[0].startswith("cc-admin") and ": error: argument " in lines[0], lines[0]


def test_every_numeric_argument_of_cc_admin_has_a_range() -> None:
    """No cc-admin option or argument takes a bare int or float: each has a range."""
    for parser in _parsers(admin.build_parser()):
        for action in parser._actions:
            assert action.type not in (int, float), (parser.prog, action.dest)
