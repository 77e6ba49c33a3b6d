"""Helpers of the hostile-client suites: a ledger, the conservation rule, a health probe,
throwaway certificates for the TLS tests (`make_pki`).

After every hostile action the suites call `Ledger.assert_healthy`: a fresh, well-behaved
client connects and charges a little, the server never answered SERVER_ERROR, no callback
of the event loop failed, and for every subscriber
    balance  == initial + top_ups - confirmed      (from the journal)
    reserved == sum of live reservations == reserves - releases
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import ssl
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import cc_client
from cc_client import ChargeableItem
from cc_server.testing import TestServer
from protocol import codec
from protocol import messages as m
from protocol.frames import encode_frame
from tests.netfakes import FrameStream, raw_connect

T = m.MsgType
ZERO = Decimal(0)
_ids = itertools.count(1)


def uid(prefix: str) -> str:
    """A fresh id."""
    return f"{prefix}-{next(_ids)}"


class Ledger:
    """What the test knows independently of the server: initial balances, credentials."""

    def __init__(self, server: TestServer, user: str | None = None,
                 password: str | None = None, ssl: Any = None) -> None:
        self.server = server
        self.initial: dict[str, Decimal] = {}
        self.login = {"user": user, "password": password, "ssl": ssl}
        self.probe_user = ""

    def connect(self, **options: Any) -> cc_client.Connector:
        """A well-behaved client (admin and charging roles)."""
        return cc_client.connect(self.server.url, request_timeout=3.0,
                                 **{**self.login, **options})

    async def subscriber(self, client: cc_client.Client, balance: str = "1000.00",
                         prefix: str = "sub") -> str:
        """Create a subscriber the ledger knows the initial balance of."""
        user = uid(prefix)
        await client.admin.create_subscriber(user, Decimal(balance),
                                             counters={"free_data": Decimal(50)})
        self.initial[user] = Decimal(balance)
        return user

    async def seed(self) -> None:
        """Subscribers with open sessions, top-ups and confirmations, and a probe user."""
        async with self.connect() as client:
            self.probe_user = await self.subscriber(client, "1000000.00", "probe")
            for _ in range(3):
                user = await self.subscriber(client)
                await client.admin.top_up(user, Decimal("5.00"))
                for k in range(2):
                    sid = uid("seed")
                    op = client.create_session_start_operation(user, "DATA", sid)
                    op.set_reservation_renewal_listener_id(7)
                    op.prepare_reserve("r-1", ChargeableItem("data", {"volume": 80}), ttl=600)
                    assert (await op.execute()).ok
                    if k:
                        stop = client.create_session_stop_operation(user, "DATA", sid)
                        stop.prepare_confirm("r-1", ChargeableItem("data", {"volume": 70}))
                        assert (await stop.execute()).ok

    async def assert_healthy(self, loop_errors: list[dict[str, Any]] | None = None) -> None:
        """A normal client is served, nothing failed inside, conservation holds."""
        async with self.connect() as client:
            sid = uid("probe")
            op = client.create_session_start_operation(self.probe_user, "DATA", sid)
            op.prepare_reserve("r-1", ChargeableItem("data", {"volume": 1}), ttl=600)
            assert (await op.execute()).ok
            stop = client.create_session_stop_operation(self.probe_user, "DATA", sid)
            stop.prepare_confirm("r-1")
            assert (await stop.execute()).ok
        assert self.server.server.dispatcher.counts["request", "SERVER_ERROR"] == 0
        if loop_errors is not None:
            assert not loop_errors, loop_errors[:3]
        assert_conservation(self.server, self.initial)


def assert_conservation(server: TestServer, initial: dict[str, Decimal]) -> None:
    """SPEC section 3's conservation rule, for every subscriber the ledger knows."""
    engine = server.engine
    assert set(initial) <= set(engine.accounts)
    for user, account in engine.accounts.items():
        sums = dict.fromkeys(m.TxKind, ZERO)
        for tx in engine.transactions(user_id=user):
            sums[tx.kind] += tx.amount
        live = sum((cs.held for sid in account.sessions
                    for cs in engine.sessions[sid].charging_sessions() if cs.open), ZERO)
        assert account.reserved == live == sums[m.TxKind.RESERVE] - sums[m.TxKind.RELEASE], user
        if user in initial:
            assert account.balance == initial[user] + sums[m.TxKind.TOP_UP] \
                - sums[m.TxKind.CONFIRM], user


async def hello_stream(server: TestServer, user: str | None = None,
                       password: str | None = None, rcvbuf: int | None = None) -> FrameStream:
    """A raw connection that completed its handshake."""
    stream = await raw_connect(server.host, server.port, rcvbuf=rcvbuf)
    stream.send(m.Hello((1,), "hostile", user, password), 1)
    _, msg = await stream.read_message(3.0)
    assert isinstance(msg, m.HelloOk), msg
    return stream


def frame(msg: m.Message, request_id: int) -> bytes:
    """The bytes of one frame."""
    return codec.encode(msg, request_id)


def raw_frame(msg_type: int, request_id: int, body: object) -> bytes:
    """A frame with any msgpack body (valid or not)."""
    return encode_frame(msg_type, request_id, codec.pack(body))


async def drain(stream: FrameStream, within: float) -> tuple[list[m.Message | bytes], bool]:
    """Frames read until the peer closes or `within` passes: (messages, closed)."""
    got: list[m.Message | bytes] = []
    try:
        async with asyncio.timeout(within):
            while (f := await stream.read_frame(within)) is not None:
                try:
                    got.append(codec.decode(f))
                except Exception:
                    got.append(f.body)
            return got, True
    except TimeoutError:
        return got, False


# ---------------------------------------------------------------------------- certificates

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


def make_pki(d: Path) -> Path:
    """Certificates in `d` (made with the openssl command line; without it the test
    fails): ca (trusted), rogue (not), server (127.0.0.1), client (from ca), intruder
    (from rogue)."""
    _ca(d, "ca")
    _ca(d, "rogue")
    _leaf(d, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                             "extendedKeyUsage=serverAuth")
    _leaf(d, "client", "ca", "extendedKeyUsage=clientAuth")
    _leaf(d, "intruder", "rogue", "extendedKeyUsage=clientAuth")
    return d


def client_tls(pki: Path, cert: str | None = None) -> ssl.SSLContext:
    """A client context trusting the test CA, with a client certificate if named."""
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert:
        context.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}.key"))
    return context


def tls_settings(pki: Path, **more: Any) -> dict[str, Any]:
    """Server settings for TLS with the test server certificate."""
    return {"tls_cert": str(pki / "server.pem"), "tls_key": str(pki / "server.key"), **more}
