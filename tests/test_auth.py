"""Users file, password hashes, roles, authentication back-off and TLS (SPEC section 5).

Certificates are made for each test session with the `openssl` command line (a CA, a
server certificate for 127.0.0.1, client certificates from that CA and from another
one); without openssl these tests fail rather than skip.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import ssl
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import cc_client
from cc_client import admin
from cc_client.admin_users import hash_password as admin_hash
from cc_server import app
from cc_server.auth import UsersFileError, hash_password, load_users, parse_hash, verify_password
from cc_server.config import ServerConfig
from cc_server.testing import ServerThread, running_server
from protocol import messages as m
from tests.hostile import Ledger, hello_stream
from tests.netfakes import raw_connect
from tests.serverproc import server_process

pytestmark = pytest.mark.timeout(60)

FAST = 2**10   # scrypt n for most test users: the format and checks are the same, only cheaper


def users_file(path: Path, users: dict[str, tuple[str, list[str]]], n: int = FAST) -> str:
    """Write a users file: name -> (password, roles)."""
    lines = []
    for name, (password, roles) in users.items():
        lines += [f'[users."{name}"]', f'password = "{hash_password(password, n=n)}"',
                  "roles = [" + ", ".join(f'"{r}"' for r in roles) + "]", ""]
    path.write_text("\n".join(lines))
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
    path.write_text(text.replace("{h}", hash_password("x", n=FAST)))
    with pytest.raises(UsersFileError, match=fragment):
        load_users(path)
    assert app.main(["--port", "0", "--users", str(path)]) == 2
    assert fragment in capsys.readouterr().err
    assert app.main(["--port", "0", "--users", str(tmp_path / "missing.toml")]) == 2


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
        tmp_path: Path, loop_errors: list[Any]) -> None:
    real = users_file(tmp_path / "u.toml", {"root": ("root-pw", ["admin", "charging"])},
                      n=2**14)                    # the default cost: ~40 ms per check
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
        assert max(gaps) < 0.03, max(gaps)       # scrypt ran on the pool, not the loop
        auth = server.server.dispatcher.stats()["security"]["auth"]
        assert auth["failed"] == 3 and auth["delayed"] == 1 and auth["refused_backoff"] == 1
        assert auth["peers_backed_off"] == 1
        ledger = Ledger(server, "root", "root-pw")
        await ledger.seed()
        await ledger.assert_healthy(loop_errors)


# ---------------------------------------------------------------------------- TLS

def _openssl(cwd: Path, *args: str) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        pytest.fail("the openssl command line tool is needed to make test certificates")
    done = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"openssl {' '.join(args)}:\n{done.stderr}"


def _ca(cwd: Path, name: str) -> None:
    _openssl(cwd, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign")


def _leaf(cwd: Path, name: str, ca: str, ext: str) -> None:
    (cwd / f"{name}.ext").write_text(ext + "\n")
    _openssl(cwd, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
    _openssl(cwd, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
             f"{ca}.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
             "-extfile", f"{name}.ext")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca (trusted), rogue (not), server (127.0.0.1), client (from ca), intruder (rogue)."""
    d = tmp_path_factory.mktemp("pki")
    _ca(d, "ca")
    _ca(d, "rogue")
    _leaf(d, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                             "extendedKeyUsage=serverAuth")
    _leaf(d, "client", "ca", "extendedKeyUsage=clientAuth")
    _leaf(d, "intruder", "rogue", "extendedKeyUsage=clientAuth")
    return d


def client_tls(pki: Path, cert: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert:
        context.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}.key"))
    return context


def tls_settings(pki: Path, **more: Any) -> dict[str, Any]:
    return {"tls_cert": str(pki / "server.pem"), "tls_key": str(pki / "server.key"), **more}


async def test_tls_serves_tls_clients_only(pki: Path, loop_errors: list[Any]) -> None:
    async with running_server(**tls_settings(pki, handshake_timeout=0.5)) as server:
        ledger = Ledger(server, ssl=client_tls(pki))
        await ledger.seed()
        with pytest.raises(cc_client.CommunicationFailure):     # plain TCP: no
            await cc_client.connect(server.url, request_timeout=1.0)
        with pytest.raises(cc_client.CommunicationFailure):     # a server it does not trust
            await cc_client.connect(server.url, request_timeout=1.0,
                                    ssl=ssl.create_default_context(
                                        cafile=str(pki / "rogue.pem")))
        silent = await raw_connect(server.host, server.port)    # no TLS handshake at all
        assert await silent.closed_within(2.0)
        assert server.server.dispatcher.stats()["security"]["tls"] is True
        await ledger.assert_healthy(loop_errors)


async def test_client_certificates_when_a_client_ca_is_given(pki: Path,
                                                             loop_errors: list[Any]) -> None:
    settings = tls_settings(pki, tls_client_ca=str(pki / "ca.pem"))
    async with running_server(**settings) as server:
        ledger = Ledger(server, ssl=client_tls(pki, "client"))
        await ledger.seed()
        for cert in (None, "intruder"):
            with pytest.raises(cc_client.CommunicationFailure):
                await cc_client.connect(server.url, request_timeout=1.0,
                                        ssl=client_tls(pki, cert))
        await ledger.assert_healthy(loop_errors)


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
        assert "AUTHENTICATION_FAILED" in err and "TLS options" in err


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


@pytest.mark.parametrize("argv, fragment", [
    (["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"],
     "cannot use --tls-cert"),
    (["--tls-cert", "{pki}/server.pem", "--tls-key", "{pki}/client.key"], "cannot use"),
    (["--tls-cert", "{pki}/server.pem", "--tls-key", "{pki}/server.key",
      "--tls-client-ca", "/nonexistent/ca.pem"], "--tls-client-ca"),
])
def test_bad_tls_files_stop_the_server_with_a_clear_error(
        pki: Path, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str) -> None:
    assert app.main(["--port", "0", *[a.replace("{pki}", str(pki)) for a in argv]]) == 2
    assert fragment in capsys.readouterr().err


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
    assert "max_id_length must be in 1..256" in capsys.readouterr().err


async def test_running_server_refuses_looser_limits() -> None:
    with pytest.raises(ValueError, match="max_string_length"):
        async with running_server(max_string_length=5000):
            pass
