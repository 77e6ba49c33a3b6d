"""TLS (README "Security"): who is served, bad certificate files, and TLS handshakes
against the connection limits and the one handshake deadline.

Certificates are made for each test module with the `openssl` command line
(`tests.hostile.make_pki`); without openssl these tests fail rather than skip.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

import cc_client
from cc_server import app
from cc_server.testing import running_server
from protocol import messages as m
from tests.hostile import Ledger, client_tls, drain, make_pki, tls_settings
from tests.netfakes import FrameStream, raw_connect, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


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


# ---------------------------------------------------------------------------- limits

@pytest.mark.parametrize("limit", ["max_connections", "max_handshakes"])
async def test_tls_handshakes_in_progress_count_from_accept(
        pki: Path, loop_errors: list[Any], limit: str) -> None:
    async with running_server(**tls_settings(pki, handshake_timeout=5.0,
                                             **{limit: 4})) as server:
        half_open = [await raw_connect(server.host, server.port) for _ in range(40)]
        ends = await asyncio.gather(*(drain(s, 0.3) for s in half_open))
        assert sum(closed for _, closed in ends) == 36     # closed at once ...
        assert all(got == [] for got, _ in ends)           # ... without a frame: no TLS yet
        assert len(server.server.connections) == 4
        stats = server.server.dispatcher.stats()
        assert stats["security"]["limits"]["TOO_MANY_CONNECTIONS"] == 36
        assert stats["connections"]["handshaking"] == 4
        for s in half_open:
            s.close()
        assert await wait_until(lambda: not server.server.connections, 2.0)
        ledger = Ledger(server, ssl=client_tls(pki))      # the slots are free again
        await ledger.seed()
        await ledger.assert_healthy(loop_errors)


async def _slow_tls_client(server_host: str, port: int, pki: Path,
                           pause: float) -> tuple[FrameStream, float]:
    """Connect, wait `pause`, then do TLS: (the stream, when it connected)."""
    reader, writer = await asyncio.open_connection(server_host, port)
    began = time.monotonic()
    await asyncio.sleep(pause)
    await writer.start_tls(client_tls(pki), server_hostname="127.0.0.1")
    return FrameStream(reader, writer), began


async def test_tls_and_hello_share_one_handshake_deadline_from_accept(
        pki: Path, loop_errors: list[Any]) -> None:
    async with running_server(**tls_settings(pki, handshake_timeout=0.4)) as server:
        stream, began = await _slow_tls_client(server.host, server.port, pki, 0.2)
        _, msg = await stream.read_message(1.0)            # no HELLO: the deadline runs out
        assert isinstance(msg, m.Error) and msg.code == "HANDSHAKE_TIMEOUT"
        assert time.monotonic() - began < 0.52             # 0.4 s from accept, not from TLS
        assert await stream.closed_within(1.0)

        stream, began = await _slow_tls_client(server.host, server.port, pki, 0.2)
        stream.send(m.Hello((1,), "slow but in time"), 1)  # both within 0.4 s: served
        _, msg = await stream.read_message(1.0)
        assert isinstance(msg, m.HelloOk)
        stream.close()
        limits = server.server.dispatcher.stats()["security"]["limits"]
        assert limits == {"HANDSHAKE_TIMEOUT": 1}
        ledger = Ledger(server, ssl=client_tls(pki))
        await ledger.seed()
        await ledger.assert_healthy(loop_errors)
