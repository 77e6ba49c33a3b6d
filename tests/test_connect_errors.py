"""Why a connection failed, as the client reports it: delayed logins, TLS, credentials.

Each failure must name its cause, and a login the server delays after failed attempts
must wait within request_timeout rather than fail at a fixed connect timeout.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import cc_client
from cc_client import client as client_module
from cc_server.testing import running_server
from protocol import codec
from protocol import messages as m
from protocol.frames import HEADER_SIZE
from tests.netfakes import FakeServer, FrameStream
from tests.test_auth import client_tls, pki, tls_settings, users_file

__all__ = ["pki"]   # a fixture, used by name
pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def one_user(tmp_path: Path) -> str:
    return users_file(tmp_path / "users.toml", {"root": ("root-pw", ["admin", "charging"])})


# ----------------------------------------------------------------------- delayed logins

async def test_a_login_delayed_after_failed_attempts_waits_within_request_timeout(
        one_user: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # TCP gets at most CONNECT_TIMEOUT; the login must not: shrink it below the delay
    monkeypatch.setattr(client_module, "CONNECT_TIMEOUT", 0.05)
    async with running_server(users=one_user, auth_max_failures=1,
                              auth_backoff_max=0.15) as server:
        with pytest.raises(cc_client.AuthenticationFailed):
            await cc_client.connect(server.url, user="root", password="wrong")
        began = time.monotonic()
        async with cc_client.connect(server.url, user="root", password="root-pw",
                                     request_timeout=2.0) as client:
            assert time.monotonic() - began >= 0.14
            assert client.connected
        assert server.server.dispatcher.stats()["security"]["auth"]["delayed"] == 1


async def test_a_login_not_answered_in_time_names_the_likely_cause(
        one_user: str) -> None:
    async with running_server(users=one_user, auth_max_failures=1,
                              auth_backoff_max=0.5) as server:
        with pytest.raises(cc_client.AuthenticationFailed):
            await cc_client.connect(server.url, user="root", password="wrong")
        with pytest.raises(cc_client.CommunicationFailure,
                           match="delayed by the server after failed attempts") as info:
            await cc_client.connect(server.url, user="root", password="root-pw",
                                    request_timeout=0.1)
        assert f"127.0.0.1:{server.port}" in info.value.message


async def test_a_stalled_login_on_the_first_address_reports_why() -> None:
    async def never_answers(stream: FrameStream) -> None:
        while await stream.read_frame(5.0) is not None:
            pass

    async with FakeServer(never_answers) as fake:
        client = cc_client.Client(fake.url, request_timeout=0.1)
        try:
            with pytest.raises(TimeoutError, match=r"login not answered within 0\.1 s"):
                await client._open("127.0.0.1", fake.port)
        finally:
            await client.close()


def test_an_exception_without_text_is_named_by_its_type() -> None:
    assert client_module._reason(TimeoutError()) == "TimeoutError"
    assert client_module._reason(OSError("refused")) == "refused"


# ----------------------------------------------------------------------- TLS and users

async def test_plain_tcp_to_a_tls_server_hints_at_tls(pki: Path) -> None:
    async with running_server(**tls_settings(pki)) as server:
        with pytest.raises(cc_client.CommunicationFailure,
                           match="the server may require TLS"):
            await cc_client.connect(server.url, request_timeout=1.0)
        async with cc_client.connect(server.url, request_timeout=1.0,
                                     ssl=client_tls(pki)) as client:
            assert client.connected


async def test_missing_client_certificate_is_named(pki: Path) -> None:
    settings = tls_settings(pki, tls_client_ca=str(pki / "ca.pem"))
    async with running_server(**settings) as server:
        for cert in (None, "intruder"):
            with pytest.raises(cc_client.CommunicationFailure,
                               match="the server requires a client certificate"):
                await cc_client.connect(server.url, request_timeout=1.0,
                                        ssl=client_tls(pki, cert))
        async with cc_client.connect(server.url, request_timeout=1.0,
                                     ssl=client_tls(pki, "client")) as client:
            assert client.connected


async def test_no_credentials_against_a_users_file_says_they_are_required(
        one_user: str) -> None:
    async with running_server(users=one_user, auth_max_failures=100) as server:
        with pytest.raises(cc_client.AuthenticationFailed,
                           match="this server requires a user and password"):
            await cc_client.connect(server.url, request_timeout=1.0)
        with pytest.raises(cc_client.AuthenticationFailed) as info:
            await cc_client.connect(server.url, user="root", password="wrong",
                                    request_timeout=1.0)
        assert "requires a user" not in info.value.message


async def test_the_server_itself_says_credentials_are_required(one_user: str) -> None:
    """Clients in other languages get the hint from the server's ERROR text."""
    async with running_server(users=one_user, auth_max_failures=100) as server:
        for hello, expected in ((m.Hello(), "this server requires a user and password"),
                                (m.Hello(user="root", password="wrong"),
                                 "unknown user or wrong password")):
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(codec.encode(hello, 1))
            header = await reader.readexactly(HEADER_SIZE)
            length, msg_type = int.from_bytes(header[:4], "big"), header[4]
            error = codec.decode_body(msg_type, await reader.readexactly(length))
            writer.close()
            assert isinstance(error, m.Error) and error.code == "AUTHENTICATION_FAILED"
            assert error.message.startswith(expected), error.message
