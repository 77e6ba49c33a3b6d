"""Every limit of PROTOCOL.md section 5: its flag, its default, its own error code, counted.

Limits hit through the public client raise `cc_client.LimitExceeded` with the limit's code;
the server counts each hit in `stats()["security"]["limits"]`, logs it, and keeps serving
(the hostile suite covers the connection-level limits over raw sockets).
"""

from __future__ import annotations

import asyncio
import re
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import cc_client
from cc_client import ChargeableItem
from cc_client.errors import _BY_CODE
from cc_server import app
from cc_server.config import ServerConfig
from cc_server.testing import running_server
from protocol import messages as m
from protocol.errors import LIMIT_CODES, ErrorCode
from tests.hostile import Ledger, raw_frame
from tests.netfakes import raw_connect

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = (ROOT / "PROTOCOL.md").read_text()
README = (ROOT / "README.md").read_text()


def start(client: cc_client.Client, user: str, item: ChargeableItem, rid: str = "r-1",
          subs: int = 1, session: str = "s", external: bytes | None = None
          ) -> cc_client.SessionStartOperation:
    op = client.create_session_start_operation(user, "DATA", session)
    if external is not None:
        op.set_external_data(external)
    for i in range(subs):
        op.prepare_reserve(f"{rid}{i or ''}", item, ttl=60)
    return op


TIGHT = {"max_subrequests": 2, "max_external_data": 8, "max_id_length": 12,
         "max_string_length": 10, "max_properties": 2}


async def test_tightened_request_limits_each_have_their_code(
        loop_errors: list[Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="cc_server")
    async with running_server(**TIGHT) as server:
        ledger = Ledger(server)
        await ledger.seed()
        user = next(u for u in ledger.initial if u != ledger.probe_user)
        if len(user) > 12:
            pytest.fail("test user ids must fit the tightened id limit")
        ok = ChargeableItem("data", {"volume": 1})
        cases = [
            (start, {"subs": 3}, "CONTAINER_TOO_LARGE"),
            (start, {"external": b"123456789"}, "EXTERNAL_DATA_TOO_LARGE"),
            (start, {"rid": "r" * 13}, "STRING_TOO_LONG"),
            (start, {"session": "s" * 13}, "STRING_TOO_LONG"),
            (start, {"item": ChargeableItem("data", {"volume": 1, "a": 1, "b": 2})},
             "TOO_MANY_PROPERTIES"),
            (start, {"item": ChargeableItem("data", {"volume": 1, "note": "x" * 11})},
             "STRING_TOO_LONG"),
        ]
        async with ledger.connect() as client:
            for make, changes, code in cases:
                args: dict[str, Any] = {"item": ok, **changes}
                with pytest.raises(cc_client.LimitExceeded) as info:
                    await make(client, user, **args).execute()
                assert info.value.code == code, (changes, info.value)
            with pytest.raises(cc_client.LimitExceeded) as info:
                await client.admin.get_subscriber("u" * 13)
            assert info.value.code == "STRING_TOO_LONG"
            assert (await start(client, user, ok, subs=2, external=b"12345678").execute()).ok
        with pytest.raises(cc_client.CommunicationFailure, match="longer than 10"):
            await cc_client.connect(server.url, client_name="n" * 11, request_timeout=1.0)
        limits = server.server.dispatcher.stats()["security"]["limits"]
        assert limits == {"CONTAINER_TOO_LARGE": 1, "EXTERNAL_DATA_TOO_LARGE": 1,
                          "STRING_TOO_LONG": 5, "TOO_MANY_PROPERTIES": 1}
        assert sum("event=limit" in r.getMessage() for r in caplog.records) == 7
        await ledger.assert_healthy(loop_errors)


async def test_format_caps_give_the_same_codes_as_configured_limits() -> None:
    async with running_server() as server:
        stream = await raw_connect(server.host, server.port)
        stream.send(m.Hello((1,), "t"), 1)
        await stream.read_message()
        body = {"op": b"x", "kind": "start", "user": "u" * 257, "service": "DATA",
                "session": "s", "subs": []}
        stream.send_raw(raw_frame(m.MsgType.EXECUTE, 2, body))
        _, msg = await stream.read_message()
        assert isinstance(msg, m.Error) and msg.code == "STRING_TOO_LONG"
        stream.close()
        assert server.server.dispatcher.stats()["security"]["limits"] == {"STRING_TOO_LONG": 1}


async def test_the_client_sends_again_what_was_refused_for_too_many_requests() -> None:
    """A window wider than the server's max_in_flight costs re-sends, never failures."""
    async with running_server(max_in_flight=16) as server, \
            cc_client.connect(server.url, queue_size_to_notify=3000) as client:
        await client.admin.create_subscriber("busy", Decimal(1))
        subs = await asyncio.gather(*(client.admin.get_subscriber("busy") for _ in range(3000)))
        assert {s.user_id for s in subs} == {"busy"}
        assert server.server.dispatcher.stats()["security"]["limits"]["TOO_MANY_REQUESTS"] > 0


async def test_idle_timeout_closes_with_its_code() -> None:
    async with running_server(idle_timeout=0.3, heartbeat=0.1) as server:
        stream = await raw_connect(server.host, server.port)
        stream.send(m.Hello((1,), "t"), 1)
        await stream.read_message()
        for _ in range(3):                           # PONGs do not count as requests
            frame, msg = await stream.read_message(1.0)
            if isinstance(msg, m.Ping):
                stream.send(m.Pong(), frame.request_id)
            else:
                break
        while not isinstance(msg, m.Error):
            _, msg = await stream.read_message(1.0)
        assert msg.code == "IDLE_TIMEOUT"
        assert await stream.closed_within(1.0)


async def test_an_idle_timeout_shorter_than_the_heartbeat_fires_on_time() -> None:
    async with running_server(idle_timeout=0.15, heartbeat=0.5) as server:
        stream = await raw_connect(server.host, server.port)
        stream.send(m.Hello((1,), "t"), 1)
        assert isinstance((await stream.read_message())[1], m.HelloOk)
        began = time.monotonic()
        _, msg = await stream.read_message(1.0)      # before the first heartbeat (0.5 s)
        assert isinstance(msg, m.Error) and msg.code == "IDLE_TIMEOUT"
        assert time.monotonic() - began < 0.35
        assert await stream.closed_within(1.0)


async def test_credit_triggered_notifications_past_the_cap_are_dropped_and_counted() -> None:
    async with running_server(max_pending_notifications=1) as server, \
            cc_client.connect(server.url) as client:
        await client.admin.create_subscriber("poor", Decimal("0.05"))
        for i in range(3):
            op = client.create_session_start_operation("poor", "DATA", f"p-{i}")
            op.set_reservation_renewal_listener_id(4)
            op.prepare_reserve("r-1", ChargeableItem("data", {"volume": 1}), ttl=60)
            assert (await op.execute()).ok
            up = client.create_session_update_operation("poor", "DATA", f"p-{i}")
            up.prepare_confirm_and_reserve("r-1", None, ChargeableItem("data", {"volume": 50}),
                                           ttl=60)
            assert (await up.execute())["r-1"].error.code == "CREDIT_LIMIT_REACHED"
        await client.admin.top_up("poor", Decimal(10))       # all three may renew now
        renewal = server.server.renewal
        assert len(renewal.pending) == 1 and renewal.counts["dropped_over_limit"] == 2
        stats = await client.admin.stats()
        assert stats["security"]["limits"]["TOO_MANY_NOTIFICATIONS"] == 2


# ---------------------------------------------------------------------------- the documents

FLAGS = {
    "max_frame": ("--max-frame", "FRAME_TOO_LARGE"),
    "max_connections": ("--max-connections", "TOO_MANY_CONNECTIONS"),
    "max_connections_per_address": ("--max-connections-per-address", "TOO_MANY_CONNECTIONS"),
    "max_handshakes": ("--max-handshakes", "TOO_MANY_CONNECTIONS"),
    "max_in_flight": ("--max-in-flight", "TOO_MANY_REQUESTS"),
    "max_subrequests": ("--max-subrequests", "CONTAINER_TOO_LARGE"),
    "max_external_data": ("--max-external-data", "EXTERNAL_DATA_TOO_LARGE"),
    "max_id_length": ("--max-id-length", "STRING_TOO_LONG"),
    "max_string_length": ("--max-string-length", "STRING_TOO_LONG"),
    "max_properties": ("--max-properties", "TOO_MANY_PROPERTIES"),
    "max_pending_notifications": ("--max-pending-notifications", "TOO_MANY_NOTIFICATIONS"),
    "handshake_timeout": ("--handshake-timeout", "HANDSHAKE_TIMEOUT"),
    "idle_timeout": ("--idle-timeout", "IDLE_TIMEOUT"),
}


def _section(doc: str, title: str) -> str:
    found = re.search(rf"^## {title}\n(.*?)(?=^## )", doc, re.S | re.M)
    assert found, title
    return found.group(1)


def test_every_limit_has_a_flag_a_default_and_a_code_in_protocol_md() -> None:
    limits = _section(PROTOCOL, "5. Limits")
    defaults = ServerConfig()
    parser_flags = app.build_parser().format_help()
    assert {code for _, code in FLAGS.values()} == {c.value for c in LIMIT_CODES}
    for name, (flag, code) in FLAGS.items():
        assert flag in parser_flags, flag
        rows = [row for row in limits.splitlines() if row.startswith("|") and f"`{flag}`" in row]
        assert len(rows) == 1, flag
        assert code in rows[0], (flag, code)
        assert hasattr(defaults, name)


def test_every_error_code_is_documented_and_known_to_the_client() -> None:
    codes = _section(PROTOCOL, "7. Error codes")
    for code in ErrorCode:
        assert f"`{code.value}`" in codes, code
        assert code.value in _BY_CODE, code


def test_readme_has_a_security_section() -> None:
    security = _section(README, "Security")
    for needed in ("--users", "--tls-cert", "--tls-key", "--tls-client-ca", "cc-admin user add",
                   "threat", "127.0.0.1", "PROTOCOL.md"):
        assert needed.lower() in security.lower(), needed
