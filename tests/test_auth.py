"""Users file, password hashes, roles, authentication back-off, users with TLS (SPEC
section 5). TLS alone: tests/test_tls.py.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest

import cc_client
from cc_client import admin, admin_users
from cc_client.admin_users import hash_password as admin_hash
from cc_server import app
from cc_server import auth as auth_module
from cc_server.auth import (
    DEFAULT_N,
    DEFAULT_P,
    DEFAULT_R,
    UsersFileError,
    hash_password,
    load_users,
    parse_hash,
    verify_password,
)
from cc_server.config import ServerConfig
from cc_server.testing import ServerThread, running_server
from protocol import messages as m
from tests.hostile import Ledger, client_tls, drain, hello_stream, make_pki, tls_settings
from tests.netfakes import raw_connect
from tests.serverproc import server_process

pytestmark = pytest.mark.timeout(60)

FAST = 2**10   # scrypt n for hash tests: the format is the same, only cheaper (a users
               # file refuses it: the server takes nothing weaker than cc-admin writes)


def users_file(path: Path, users: dict[str, tuple[str, list[str]]], n: int = DEFAULT_N) -> str:
    """Write a users file (mode 0600, as cc-admin does): name -> (password, roles)."""
    lines = []
    for name, (password, roles) in users.items():
        lines += [f'[users."{name}"]', f'password = "{hash_password(password, n=n)}"',
                  "roles = [" + ", ".join(f'"{r}"' for r in roles) + "]", ""]
    path.write_text("\n".join(lines))
    path.chmod(0o600)
    return str(path)


@pytest.fixture
def users(tmp_path: Path) -> str:
    return users_file(tmp_path / "users.toml", {
        "root": ("root-pw", ["admin", "charging"]), "gw": ("gw-pw", ["charging"]),
        "ops": ("ops-pw", ["admin"])})


# ---------------------------------------------------------------------------- hashes

def test_hashes_are_salted_self_describing_and_verified() -> None:
    one, two = hash_password("s3cret", n=FAST), hash_password("s3cret", n=FAST)
    assert one != two and one.startswith(f"scrypt${FAST}$8$1$")
    assert verify_password("s3cret", one) and verify_password("s3cret", two)
    assert not verify_password("s3cret ", one) and not verify_password("", one)
    parsed = parse_hash(one)
    assert len(parsed.salt) == 16 and len(parsed.key) == 32
    forged = one[:-4] + ("AAAA" if not one.endswith("AAAA") else "BBBB")
    assert not verify_password("s3cret", forged)
    for bad in ["", "plain", "scrypt$3$8$1$AAAAAAAAAAA$" + "A" * 43, "bcrypt$1$2$3$4$5",
                "scrypt$1024$8$1$!!$AAAA", f"scrypt${2**30}$8$1$AAAAAAAAAAA$" + "A" * 43]:
        with pytest.raises(ValueError):
            parse_hash(bad)


def test_cc_admin_writes_what_the_server_verifies(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert verify_password("pw", admin_hash("pw", n=FAST))
    path = tmp_path / "u.toml"

    def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = admin.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    f = ["--users-file", str(path)]
    assert run("user", "add", 'gw "1"', "--roles", "charging", "--password-stdin", *f,
               stdin="first\n")[0] == 0
    assert run("user", "add", "ops", "--roles", "admin,charging", "--password-stdin", *f,
               stdin="second\n")[0] == 0
    code, out, _ = run("user", "add", "ops", "--roles", "admin", "--password-stdin", *f,
                       stdin="third\n")
    assert code == 0 and out.startswith("updated user ops (admin)")
    assert os.stat(path).st_mode & 0o777 == 0o600
    users = load_users(path)
    assert users['gw "1"'].roles == {"charging"} and users["ops"].roles == {"admin"}
    assert verify_password("first", users['gw "1"'].password)
    assert verify_password("third", users["ops"].password)
    assert not verify_password("second", users["ops"].password)
    assert run("user", "list", *f)[1] == 'gw "1"\tcharging\nops\tadmin\n'
    assert run("user", "remove", "ops", *f)[0] == 0
    assert set(load_users(path)) == {'gw "1"'}
    assert run("user", "remove", "ops", *f)[0] == 1
    assert run("user", "add", "x", "--roles", "root", "--password-stdin", *f)[0] == 2
    assert run("user", "add", "x", "--roles", "admin", "--password-stdin", *f, stdin="\n")[0] == 2
    assert run("user", "add", "x", "--roles", "admin", *f)[0] == 2      # no terminal to ask on
    monkeypatch.setenv("CC_USERS_FILE", str(path))
    assert run("user", "list")[1] == 'gw "1"\tcharging\n'


@pytest.mark.parametrize("text, fragment", [
    ("[users.a]\npassword = 'x'\nroles = ['admin']\n", "not a scrypt hash"),
    ("[users.a]\npassword = '{h}'\nroles = ['root']\n", "unknown role"),
    ("[users.a]\npassword = '{h}'\nroles = []\n", "non-empty list"),
    ("[users.a]\npassword = '{h}'\nroles = ['admin']\nlisteners = [1]\n", "unknown key"),
    ("[users.a]\nroles = ['admin']\n", "hash string"),
    ("[[users]]\nname = 'a'\n", "must be a table"),
    ("[people.a]\n", "unknown key"),
    ("users = [", "not valid TOML"),
])
def test_a_bad_users_file_stops_the_server_with_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, fragment: str) -> None:
    path = tmp_path / "users.toml"
    path.write_text(text.replace("{h}", hash_password("x")))
    with pytest.raises(UsersFileError, match=fragment):
        load_users(path)
    assert app.main(["--port", "0", "--users", str(path)]) == 2
    assert fragment in capsys.readouterr().err
    assert app.main(["--port", "0", "--users", str(tmp_path / "missing.toml")]) == 2


def test_scrypt_parameters_weaker_than_cc_admin_writes_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (admin_users.SCRYPT_N, admin_users.SCRYPT_R, admin_users.SCRYPT_P) == \
        (DEFAULT_N, DEFAULT_R, DEFAULT_P)                  # what `cc-admin user add` writes
    path = tmp_path / "users.toml"
    for n, r in [(2**13, 8), (2**14, 4)]:
        path.write_text(f"[users.a]\npassword = '{hash_password('x', n=n, r=r)}'\n"
                        "roles = ['admin']\n")
        with pytest.raises(UsersFileError, match="weaker than"):
            load_users(path)
        assert app.main(["--port", "0", "--users", str(path)]) == 2
        assert "weaker than the n=16384 r=8 p=1" in capsys.readouterr().err
    path.write_text(f"[users.a]\npassword = '{hash_password('x', n=2**15)}'\n"
                    "roles = ['admin']\n")
    assert set(load_users(path)) == {"a"}                 # stronger is welcome


async def test_users_file_open_to_others_is_warned_about_at_start_and_at_reload(
        users: str, caplog: pytest.LogCaptureFixture) -> None:
    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if "event=users_file_exposed" in r.getMessage() and r.levelno == logging.WARNING]

    os.chmod(users, 0o644)
    async with running_server(users=users) as server:
        (first,) = warnings()
        assert f"{users} is open to group or others (mode 0644)" in first
        assert f"chmod 600 {users}" in first
        os.chmod(users, 0o640)
        assert server.server.reload_users()       # a warning, not a refusal
        assert "(mode 0640)" in warnings()[-1]
        os.chmod(users, 0o600)
        assert server.server.reload_users() and len(warnings()) == 2


def _write(path: str, text: str) -> None:
    Path(path).write_text(text)


async def test_a_reload_keeps_the_users_in_force_when_the_file_is_empty_or_weak(
        users: str, caplog: pytest.LogCaptureFixture) -> None:
    async with running_server(users=users) as server:
        before = server.server.users
        weak = f"[users.gw]\npassword = '{hash_password('new', n=FAST)}'\nroles = ['admin']\n"
        for text, reason in [("", "has no users"), ("[users]\n", "has no users"),
                             (weak, "weaker than")]:
            _write(users, text)
            assert not server.server.reload_users()
            assert server.server.users is before
            failed = [r for r in caplog.records if "event=users_reload_failed" in r.getMessage()]
            assert reason in failed[-1].getMessage() and failed[-1].levelno == logging.ERROR
        stream = await hello_stream(server, "gw", "gw-pw")
        stream.close()                            # the users in force still log in


# ---------------------------------------------------------------------------- roles

async def test_roles_gate_charging_and_operator_requests(users: str,
                                                         loop_errors: list[Any]) -> None:
    async with running_server(users=users) as server:
        ledger = Ledger(server, "root", "root-pw")
        await ledger.seed()
        user = next(u for u in ledger.initial if u != ledger.probe_user)
        sid = next(s for s, session in server.engine.sessions.items() if session.user_id == user)
        async with cc_client.connect(server.url, user="gw", password="gw-pw") as gw:
            op = gw.create_session_start_operation(user, "DATA", "gw-1")
            op.prepare_reserve("r-1", m.ChargeableItem("data", {"volume": 1}), ttl=60)
            assert (await op.execute()).ok
            await gw.register_reservation_renewal_listener(5, lambda n: None)
            calls = [gw.admin.stats(), gw.admin.get_subscriber(user),
                     gw.admin.create_subscriber("new", Decimal(1)),
                     gw.admin.top_up(user, Decimal(100)), gw.admin.find_sessions(user),
                     gw.admin.cancel_session(sid), gw.admin.transactions(user),
                     gw.admin.request_renewal(sid, "r-1")]
            for call in calls:
                with pytest.raises(cc_client.Forbidden):
                    await call
        async with cc_client.connect(server.url, user="ops", password="ops-pw") as ops:
            assert (await ops.admin.get_subscriber(user)).user_id == user
            op = ops.create_session_start_operation(user, "DATA", "ops-1")
            op.prepare_reserve("r-1", m.ChargeableItem("data", {"volume": 1}), ttl=60)
            with pytest.raises(cc_client.Forbidden):
                await op.execute()
            with pytest.raises(cc_client.Forbidden):
                await ops.register_reservation_renewal_listener(5, lambda n: None)
        stream = await hello_stream(server, "gw", "gw-pw")
        stream.send(m.AdminRequest("top_up", {"user": user, "amount": Decimal(5)}), 2)
        _, msg = await stream.read_message()
        assert isinstance(msg, m.Error) and msg.code == "FORBIDDEN"
        stream.close()
        assert "new" not in server.engine.accounts and sid in server.engine.sessions
        assert server.server.dispatcher.counts["request", "FORBIDDEN"] >= 11
        await ledger.assert_healthy(loop_errors)


async def test_hello_ok_says_which_roles_were_granted(users: str) -> None:
    async with running_server(users=users) as server:
        for user, password, roles in [("root", "root-pw", ("admin", "charging")),
                                      ("gw", "gw-pw", ("charging",)),
                                      ("ops", "ops-pw", ("admin",))]:
            stream = await raw_connect(server.host, server.port)
            stream.send(m.Hello((1,), "t", user, password), 1)
            _, msg = await stream.read_message()
            assert isinstance(msg, m.HelloOk) and msg.roles == roles
            stream.close()


# ---------------------------------------------------------------------------- failures

async def test_wrong_or_missing_credentials_are_refused_logged_and_counted(
        users: str, loop_errors: list[Any], caplog: pytest.LogCaptureFixture) -> None:
    async with running_server(users=users, auth_max_failures=100) as server:
        for user, password in [("gw", "wrong"), ("gw", None), ("nobody", "gw-pw"),
                               (None, None), ("GW", "gw-pw"), ("gw", "gw-pw\n")]:
            with pytest.raises(cc_client.AuthenticationFailed):
                await cc_client.connect(server.url, user=user, password=password)
        stream = await raw_connect(server.host, server.port)   # a raw one sees the ERROR
        stream.send(m.Hello((1,), "t", "gw", "nope"), 1)
        frame, msg = await stream.read_message()
        assert isinstance(msg, m.Error) and msg.code == "AUTHENTICATION_FAILED"
        assert frame.request_id == 0 and await stream.closed_within(1.0)
        auth = server.server.dispatcher.stats()["security"]["auth"]
        assert auth["failed"] == 7 and auth["mode"] == "users file" and auth["users"] == 3
        assert sum("event=auth_failed" in r.getMessage() for r in caplog.records) == 7
        ledger = Ledger(server, "root", "root-pw")
        await ledger.seed()
        await ledger.assert_healthy(loop_errors)


async def test_repeated_failures_back_off_one_handshake_at_a_time_without_stalling(
        tmp_path: Path, loop_errors: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    real = users_file(tmp_path / "u.toml", {"root": ("root-pw", ["admin", "charging"])},
                      n=2**14)                    # the default cost: ~40 ms per check
    checked_on: list[int] = []                   # the threads the password checks ran on
    real_scrypt = auth_module._scrypt

    def recording_scrypt(*args: Any) -> bytes:
        checked_on.append(threading.get_ident())
        return real_scrypt(*args)

    monkeypatch.setattr(auth_module, "_scrypt", recording_scrypt)
    async with running_server(users=real, auth_max_failures=3, auth_backoff_max=0.5) as server:
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not done.is_set():
                await asyncio.sleep(0.002)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        checked_on.clear()                   # (loading the users file may check one too)
        attempts = [cc_client.connect(server.url, user="root", password=f"guess-{i}")
                    for i in range(3)]
        results = await asyncio.gather(*attempts, return_exceptions=True)
        assert all(isinstance(r, cc_client.AuthenticationFailed) for r in results)

        began = time.monotonic()            # now backed off: the right password waits ...
        slow = asyncio.ensure_future(cc_client.connect(server.url, user="root",
                                                       password="root-pw"))
        await asyncio.sleep(0.05)
        with pytest.raises(cc_client.AuthenticationFailed):   # ... and only one may wait
            await cc_client.connect(server.url, user="root", password="root-pw")
        client = await slow
        assert time.monotonic() - began >= 0.25
        await client.close()
        done.set()
        await tick
        # scrypt ran on the pool, not the loop: no check on the loop's thread, and (a
        # looser second sign, as wall time on a busy machine) no long stall of the loop
        assert checked_on and threading.get_ident() not in checked_on
        assert max(gaps) < 0.2, max(gaps)
        auth = server.server.dispatcher.stats()["security"]["auth"]
        assert auth["failed"] == 3 and auth["delayed"] == 1 and auth["refused_backoff"] == 1
        assert auth["peers_backed_off"] == 1
        ledger = Ledger(server, "root", "root-pw")
        await ledger.seed()
        await ledger.assert_healthy(loop_errors)


async def test_parallel_guesses_from_one_address_are_checked_one_at_a_time_and_backed_off(
        users: str, loop_errors: list[Any]) -> None:
    async with running_server(users=users, auth_max_failures=3, auth_backoff_max=0.2,
                              handshake_timeout=1.0) as server:
        auth = server.server.auth
        lock = threading.Lock()
        running, most = 0, 0
        check = auth._check

        def counted(*args: Any) -> Any:        # the password check, on the worker threads
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            try:
                return check(*args)
            finally:
                with lock:
                    running -= 1

        auth._check = counted  # type: ignore[method-assign]
        streams = [await raw_connect(server.host, server.port) for _ in range(30)]
        for i, stream in enumerate(streams):     # 30 guesses at once
            stream.send(m.Hello((1,), "guesser", "root", f"guess-{i}"), 1)
        ends = await asyncio.gather(*(drain(s, 3.0) for s in streams))
        assert all(closed and isinstance(got[-1], m.Error) for got, closed in ends)
        codes = Counter(cast(m.Error, got[-1]).code for got, _ in ends)
        assert most == 1                          # one check at a time for the address
        refused = codes["AUTHENTICATION_FAILED"]  # 3, then one per 0.2 s until the deadline
        assert 3 <= refused <= 8 and codes["HANDSHAKE_TIMEOUT"] == 30 - refused, codes
        stats = auth.stats()
        assert refused <= stats["failed"] <= refused + 1   # (+1: a check the deadline cut)
        assert stats["delayed"] >= 1 and stats["queued"] >= 20
        ledger = Ledger(server, "root", "root-pw")
        await ledger.seed()
        await ledger.assert_healthy(loop_errors)


async def test_an_authenticate_hook_gets_the_same_back_off_and_may_fail_safely(
        loop_errors: list[Any], caplog: pytest.LogCaptureFixture) -> None:
    async with running_server(auth_max_failures=2, auth_backoff_max=0.1) as server:
        def hook(user: str | None, password: str | None, conn: Any) -> frozenset[str] | None:
            if password == "boom":
                raise RuntimeError("a bug in the hook")
            return frozenset({"admin", "charging"}) if password == "pw" else None

        server.server.authenticate = hook  # type: ignore[method-assign]
        for password in ("boom", "nope"):               # a failing hook refuses
            with pytest.raises(cc_client.AuthenticationFailed):
                await cc_client.connect(server.url, user="u", password=password)
        assert any("event=auth_hook_failed" in r.getMessage() for r in caplog.records)
        began = time.monotonic()                        # backed off: delayed, one at a time
        slow = asyncio.ensure_future(cc_client.connect(server.url, user="u", password="pw"))
        await asyncio.sleep(0.03)
        with pytest.raises(cc_client.AuthenticationFailed):
            await cc_client.connect(server.url, user="u", password="pw")
        client = await slow
        assert time.monotonic() - began >= 0.1
        await client.close()
        stats = server.server.auth.stats()
        assert stats["failed"] == 2 and stats["delayed"] == 1 and stats["refused_backoff"] == 1
        assert not server.server.auth._lines and not loop_errors


# ---------------------------------------------------------------------------- TLS

@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_cc_admin_over_tls_with_users(pki: Path, users: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with ServerThread(users=users, **tls_settings(pki)) as server:
        base = ["--server", server.url, "--tls-ca", str(pki / "ca.pem")]
        assert admin.main([*base, "--user", "ops", "--password", "ops-pw", "subscriber",
                           "create", "tls-alice", "--balance", "2"]) == 0
        assert admin.main([*base, "--user", "ops", "--password", "nope", "stats"]) == 1
        assert admin.main(["--server", server.url, "--timeout", "1", "stats"]) == 3
        assert admin.main([*base, "--tls-cert", "/nonexistent.pem", "stats"]) == 2
        err = capsys.readouterr().err
        assert "AUTHENTICATION_FAILED" in err and "--tls-cert /nonexistent.pem: no such file" in err


def test_cc_server_with_tls_and_users_end_to_end(pki: Path, users: str) -> None:
    tls = ["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key")]
    with server_process("--users", users, *tls) as proc:
        assert proc.proc is not None

        async def use() -> None:
            async with cc_client.connect(proc.url, user="root", password="root-pw",
                                         ssl=client_tls(pki)) as client:
                await client.admin.create_subscriber("e2e", Decimal(3))
                assert (await client.admin.get_subscriber("e2e")).balance == Decimal(3)

        asyncio.run(use())
        assert proc.stop() == 0
    line = proc.first_line
    assert line == f"listening on 127.0.0.1:{proc.port} (3 user(s), passwords required; TLS)\n"


def test_sighup_rereads_the_users_file_and_a_broken_file_keeps_the_users_in_force(
        tmp_path: Path, users: str) -> None:
    with server_process("--users", users) as proc:
        assert proc.proc is not None

        async def logs_in(user: str, password: str) -> bool:
            try:
                async with cc_client.connect(proc.url, user=user, password=password):
                    return True
            except cc_client.AuthenticationFailed:
                return False

        async def until(user: str, password: str, expected: bool) -> bool:
            for _ in range(100):
                if await logs_in(user, password) == expected:
                    return True
                await asyncio.sleep(0.05)
            return False

        async def before() -> None:
            assert await logs_in("gw", "gw-pw") and not await logs_in("new", "new-pw")

        async def after_reload() -> None:
            assert await until("new", "new-pw", True)
            assert not await logs_in("gw", "gw-pw")          # removed from the file

        async def after_broken_reload() -> None:
            await asyncio.sleep(0.3)
            assert await logs_in("new", "new-pw")             # the previous users stay

        asyncio.run(before())
        users_file(Path(users), {"root": ("root-pw", ["admin", "charging"]),
                                 "new": ("new-pw", ["charging"])})
        proc.proc.send_signal(signal.SIGHUP)
        asyncio.run(after_reload())
        Path(users).write_text("users = [")                  # broken: not valid TOML
        proc.proc.send_signal(signal.SIGHUP)
        asyncio.run(after_broken_reload())
        assert proc.stop() == 0
    log = "\n".join(proc.log)
    assert "event=users_reloaded users=2" in log and "event=users_reload_failed" in log


# ---------------------------------------------------------------------------- start-up

async def test_start_up_line_and_warnings(users: str) -> None:
    async with running_server() as open_server:
        line = app.startup_line("127.0.0.1", 9500, open_server.server)
        assert line == ("listening on 127.0.0.1:9500 (no users file, every client is trusted "
                        "with every role; plain TCP)")
        assert app.startup_warnings(open_server.server) == []
        open_server.server.config.host = "0.0.0.0"      # as if bound to every interface
        (warning,) = app.startup_warnings(open_server.server)
        assert "no --users file" in warning and "0.0.0.0" in warning
    async with running_server(users=users, test_controls=False) as closed:
        closed.server.config.host = "192.0.2.1"
        (warning,) = app.startup_warnings(closed.server)
        assert "without TLS" in warning
    assert app.is_loopback("::1") and app.is_loopback("localhost")
    assert not app.is_loopback("::") and not app.is_loopback("example.org")


def test_settings_past_the_format_caps_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert ServerConfig().problems() == []
    problems = ServerConfig(max_id_length=300, max_properties=0, max_frame=10,
                            tls_cert="c.pem").problems()
    assert len(problems) == 4
    for argv in (["--max-id-length", "300"], ["--max-subrequests", "5000"],
                 ["--tls-key", "k.pem"], ["--max-in-flight", "0"]):
        with pytest.raises(SystemExit) as info:
            app.config_from_args(argv)
        assert info.value.code == 2
    assert "--max-id-length (config key max_id_length) must be in 1..256" in \
        capsys.readouterr().err


async def test_running_server_refuses_looser_limits() -> None:
    with pytest.raises(ValueError, match="max_string_length"):
        async with running_server(max_string_length=5000):
            pass
