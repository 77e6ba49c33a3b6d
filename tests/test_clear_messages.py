"""Clear one-line messages where a user first goes wrong: TLS files, addresses, no server
(issue item 16), in cc-admin, cc-bench, the examples, the client and cc-server."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

import cc_client
from cc_bench.cli import main as bench_main
from cc_client.admin import DEFAULT_TIMEOUT
from cc_client.admin import main as admin_main
from cc_client.client import parse_address
from cc_client.tlsfiles import TlsOptionError, client_context
from cc_server import app
from cc_server.config import ServerConfig
from tests.hostile import make_pki

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# ------------------------------------------------------------------ addresses

@pytest.mark.parametrize(("address", "says"), [
    ("tcp://127.0.0.1:9500", "no scheme (tcp://) here, write HOST:PORT (e.g. 127.0.0.1:9500)"),
    ("127.0.0.1:70000", "port 70000 is out of range (1 to 65535)"),
    ("127.0.0.1:0", "port 0 is out of range"),
    ("127.0.0.1:http", "the port must be a number"),
])
def test_a_bad_address_says_what_is_wrong(address: str, says: str) -> None:
    with pytest.raises(ValueError, match=r".*") as caught:
        parse_address(address)
    assert says in str(caught.value)


async def test_nothing_listening_is_named_with_a_hint() -> None:
    port = free_port()
    with pytest.raises(cc_client.CommunicationFailure) as caught:
        await cc_client.connect(f"127.0.0.1:{port}", request_timeout=2.0)
    text = caught.value.message
    assert f"127.0.0.1:{port}: nothing listens there (connection refused)" in text
    assert "is cc-server running" in text and "\n" not in text


@pytest.mark.parametrize(("address", "status", "says"), [
    ("tcp://127.0.0.1:9500", 2, "no scheme"),
    ("127.0.0.1:99999", 2, "out of range"),
    ("127.0.0.1:{free}", 3, "nothing listens there"),
])
def test_cc_admin_gives_one_line_per_address_problem(
        address: str, status: int, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = admin_main(["--server", address.format(free=free_port()), "stats"])
    captured = capsys.readouterr()
    assert code == status and captured.out == ""
    assert says in one_line(captured.err)


@pytest.mark.parametrize(("address", "says"), [
    ("tcp://127.0.0.1:9500", "no scheme"), ("127.0.0.1:99999", "out of range")])
def test_cc_bench_gives_one_line_per_address_problem(
        address: str, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        bench_main(["--server", address, "--sessions", "1"])
    assert caught.value.code == 2
    assert says in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("example", ["charge_session.py", "renewal_gateway.py"])
def test_the_examples_print_one_line_and_fail_without_a_server(example: str) -> None:
    run = subprocess.run([sys.executable, str(EXAMPLES / example), f"127.0.0.1:{free_port()}"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 1 and run.stdout == ""
    assert one_line(run.stderr).startswith(f"{example}: no address answers")
    assert "is cc-server running" in run.stderr


def test_cc_admin_waits_longer_than_a_default_login_back_off() -> None:
    assert ServerConfig().auth_backoff_max < DEFAULT_TIMEOUT


# ------------------------------------------------------------------ TLS files

def test_client_tls_options_name_the_file_and_the_problem(pki: Path, tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not pem\n")
    cases = [
        ({"ca": str(tmp_path / "none.pem")}, f"--tls-ca {tmp_path / 'none.pem'}: no such file"),
        ({"ca": str(tmp_path)}, f"--tls-ca {tmp_path}: a directory"),
        ({"ca": str(tmp_path / "junk.pem")}, "junk.pem: not a PEM certificate"),
        ({"cert": str(pki / "client.pem"), "key": str(tmp_path / "junk.pem")},
         f"--tls-key {tmp_path / 'junk.pem'}: no PEM private key in it"),
        ({"cert": str(pki / "client.pem"), "key": str(pki / "server.key")},
         f"--tls-key {pki / 'server.key'}: does not belong to --tls-cert "
         f"{pki / 'client.pem'}"),
        ({"key": str(pki / "client.key")}, "needs --tls-cert"),
    ]
    for options, says in cases:
        with pytest.raises(TlsOptionError) as caught:
            client_context(**options)   # type: ignore[arg-type]
        assert says in str(caught.value), (options, str(caught.value))
    assert client_context(ca=str(pki / "ca.pem"), cert=str(pki / "client.pem"),
                          key=str(pki / "client.key")) is not None


def test_cc_admin_tls_option_error_is_one_line(pki: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = admin_main(["--tls-cert", str(pki / "client.pem"), "--tls-key",
                       str(pki / "server.key"), "stats"])
    assert code == 2
    assert "does not belong to --tls-cert" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize(("argv", "says"), [
    (["--tls-cert", "{pki}/server.pem", "--tls-key", "/nonexistent/key.pem"],
     "cannot use --tls-key /nonexistent/key.pem: no such file"),
    (["--tls-cert", "{pki}/server.key", "--tls-key", "{pki}/server.key"],
     "cannot use --tls-cert {pki}/server.key: not a PEM certificate"),
    (["--tls-cert", "{pki}/server.pem", "--tls-key", "{pki}/client.key"],
     "cannot use --tls-key {pki}/client.key: it does not belong to --tls-cert"),
])
def test_cc_server_tls_errors_name_the_file(pki: Path, argv: list[str], says: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert app.main(["--port", "0", *[a.replace("{pki}", str(pki)) for a in argv]]) == 2
    assert says.replace("{pki}", str(pki)) in capsys.readouterr().err


def test_cc_bench_says_nothing_listens_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = bench_main(["--server", f"127.0.0.1:{free_port()}", "--sessions", "1",
                       "--connections", "1", "--quiet"])
    assert code == 1
    assert "nothing listens there (connection refused)" in one_line(capsys.readouterr().err)
