"""cc-admin subscriber list | delete | adjust | counter set | counter reset, against a
loopback server (in-process `main(argv)`), with the exit statuses of the other commands."""

from __future__ import annotations

import itertools
import json
import os

import pytest

import cc_client.sync
from cc_client import ChargeableItem
from cc_client.admin import main
from tests import test_admin_cli as cli

url = cli.url                   # fixtures: one server for the module, a clean environment
_clean_env = cli._clean_env

_ids = itertools.count(1)


def prefix() -> str:
    """A fresh id prefix (the module's server is shared)."""
    return f"p{os.getpid()}x{next(_ids)}-"


def run(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    """main(argv + --server url) -> (exit status, stdout, stderr)."""
    code = main([*argv, "--server", url])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_filters_pages_and_prints_json_lines(capsys: pytest.CaptureFixture[str],
                                                  url: str) -> None:
    p = prefix()
    for name, currency in (("b", "EUR"), ("a", "EUR"), ("c", "USD")):
        assert run(capsys, url, "subscriber", "create", p + name, "--balance", "5",
                   "--currency", currency)[0] == 0
    code, out, _ = run(capsys, url, "subscriber", "list", "--prefix", p)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["USER", "CURRENCY", "BALANCE", "RESERVED", "AVAILABLE",
                                "COUNTERS"]
    assert [line.split()[0] for line in lines[1:]] == [p + "a", p + "b", p + "c"]
    code, out, _ = run(capsys, url, "subscriber", "list", "--prefix", p, "--currency", "EUR",
                       "--after", p + "a", "--json")
    assert code == 0
    assert [json.loads(line)["user_id"] for line in out.splitlines()] == [p + "b"]
    code, out, _ = run(capsys, url, "subscriber", "list", "--prefix", p + "zz")
    assert (code, out) == (0, "no subscribers\n")


def test_adjust_with_a_negative_amount_and_a_reason(capsys: pytest.CaptureFixture[str],
                                                    url: str) -> None:
    user = prefix() + "u"
    run(capsys, url, "subscriber", "create", user, "--balance", "1.00")
    code, out, _ = run(capsys, url, "subscriber", "adjust", user, "-2.50", "--reason",
                       "chargeback", "--json")
    assert code == 0 and json.loads(out)["balance"] == "-1.50"
    code, out, _ = run(capsys, url, "transactions", "--user", user, "--json")
    (tx,) = [json.loads(line) for line in out.splitlines()]
    assert (tx["kind"], tx["reason"], tx["amount"], tx["reservation_id"]) == (
        "confirm", "admin", "2.50", "chargeback")
    code, _, err = run(capsys, url, "subscriber", "adjust", user, "1")     # no --reason
    assert code == 2 and "--reason" in err
    code, _, err = run(capsys, url, "subscriber", "adjust", user, "0", "--reason", "x")
    assert code == 1 and err.startswith("error: INVALID_REQUEST")


def test_counter_set_and_reset(capsys: pytest.CaptureFixture[str], url: str) -> None:
    user = prefix() + "u"
    run(capsys, url, "subscriber", "create", user, "--balance", "1", "--counter",
        "free_data=30")
    code, out, _ = run(capsys, url, "subscriber", "counter", "set", user, "free_data", "100",
                       "--reason", "monthly")
    assert code == 0 and "free_data" in out and "100" in out
    code, out, _ = run(capsys, url, "subscriber", "counter", "reset", user, "free_data",
                       "--json")
    assert code == 0 and json.loads(out)["counters"] == {}
    code, _, err = run(capsys, url, "subscriber", "counter", "reset", user, "free_data")
    assert code == 1 and "INVALID_REQUEST" in err and "no counter" in err


def test_delete_is_refused_with_sessions_unless_forced(capsys: pytest.CaptureFixture[str],
                                                       url: str) -> None:
    user = prefix() + "u"
    run(capsys, url, "subscriber", "create", user, "--balance", "10")
    with cc_client.sync.connect(url) as client:
        op = client.create_session_start_operation(user_id=user, service_id="DATA",
                                                   session_id=user + "-s")
        op.prepare_reserve("r1", ChargeableItem("data", {"volume": 100}), ttl=600)
        op.execute()
    code, _, err = run(capsys, url, "subscriber", "delete", user)
    assert code == 1 and err.startswith("error: SESSION_EXISTS") and "--force" not in err
    assert "force" in err
    code, out, _ = run(capsys, url, "subscriber", "delete", user, "--force")
    assert code == 0
    assert out.startswith(f"subscriber {user} deleted; released 1.00 EUR of 1 session(s)")
    code, _, err = run(capsys, url, "subscriber", "show", user)
    assert code == 1 and err.startswith("error: USER_UNKNOWN")
    code, out, _ = run(capsys, url, "subscriber", "delete", user)
    assert code == 1


def test_create_refuses_a_negative_balance(capsys: pytest.CaptureFixture[str],
                                           url: str) -> None:
    code, _, err = run(capsys, url, "subscriber", "create", prefix() + "u", "--balance", "-1")
    assert code == 1 and err.startswith("error: INVALID_REQUEST")


def test_unreachable_server_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["subscriber", "list", "--server", "127.0.0.1:1", "--timeout", "0.5"])
    capsys.readouterr()
    assert code == 3
