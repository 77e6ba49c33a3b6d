"""The worked example of PROTOCOL.md decodes to exactly what the document says."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import pytest

from protocol import codec
from protocol import messages as m
from protocol.frames import FrameDecoder

DOC = (Path(__file__).resolve().parent.parent / "PROTOCOL.md").read_text()


def hex_blocks() -> list[bytes]:
    blocks = re.findall(r"```\n((?:[0-9a-f]{2}[ \n])+)```", DOC)
    return [bytes.fromhex(b.replace("\n", " ")) for b in blocks]


def test_document_has_the_three_frames() -> None:
    assert len(hex_blocks()) == 3


def test_hello_example() -> None:
    (frame,) = FrameDecoder().feed(hex_blocks()[0])
    assert (frame.type, frame.request_id) == (m.MsgType.HELLO, 1)
    assert codec.decode(frame) == m.Hello((1,), "gw-1")


def test_execute_example() -> None:
    (frame,) = FrameDecoder().feed(hex_blocks()[1])
    assert (frame.type, frame.request_id, len(frame.body)) == (m.MsgType.EXECUTE, 2, 99)
    msg = codec.decode(frame)
    assert msg == m.Execute(bytes(range(1, 9)), m.ContainerKind.START, "alice", "DATA", "s-1", (
        m.SubRequest(m.Action.RESERVE, "r-1", m.ChargeableItem("data", {"volume": 100}),
                     ttl=30),))


def test_execute_result_example() -> None:
    (frame,) = FrameDecoder().feed(hex_blocks()[2])
    msg = codec.decode(frame)
    assert isinstance(msg, m.ExecuteResult) and frame.request_id == 2
    (outcome,) = msg.outcomes
    assert outcome.reserve_result == m.RatingResult(Decimal("1.00"), "EUR")
    assert outcome.expires_at == dt.datetime(2026, 11, 23, 12, 0, 30, tzinfo=dt.UTC)
    assert outcome.granted_item == m.ChargeableItem("data", {"volume": 100})


def test_every_message_type_is_documented() -> None:
    for t in m.MsgType:
        assert f"| 0x{t.value:02X} | {t.name} |" in DOC or f"{t.name} (0x{t.value:02X})" in DOC, t


# ------------------------------------------------------------------ statements checked

def section(title: str) -> str:
    found = re.search(rf"^##+ {re.escape(title)}\n(.*?)(?=^##+ )", DOC, re.S | re.M)
    assert found, title
    return found.group(1)


def test_the_built_in_catalog_table_is_the_servers() -> None:
    from cc_server.engine import Catalog
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \| `(\w+)`[^|]*\| (\d+) \| ([\d.]+) \| "
                      r"(?:`(\w+)`|none) \|$", section("Rating and the built-in catalog"),
                      re.M)
    documented = {(svc, item): (qty, Decimal(step), Decimal(price), counter or None)
                  for svc, item, qty, step, price, counter in rows}
    actual = {key: (p.quantity, p.step, p.prices["EUR"], p.allowance)
              for key, p in Catalog.builtin().plans.items()}
    assert documented == actual


def test_the_minor_units_listed_are_the_servers() -> None:
    from protocol.money import MINOR_UNITS
    text = " ".join(section("3. Bodies").split())
    for places in (0, 3, 4):
        listed = re.search(rf"{places} for ((?:[A-Z]{{3}} ?)+)", text)
        assert listed, places
        assert set(listed.group(1).split()) == {c for c, n in MINOR_UNITS.items()
                                                if n == places}


def test_request_id_0_is_refused_exactly_on_the_messages_that_get_a_reply() -> None:
    from protocol.connection import ANSWERED
    text = " ".join(section("1. Connection life cycle").split())
    answered = re.search(r"gets a reply \(([A-Z_, ]+)\) sent with request id 0", text)
    never = re.search(r"never get a reply: ([A-Z_, and]+)\.", text)
    assert answered and never
    assert {m.MsgType[n] for n in answered.group(1).split(", ")} == ANSWERED
    names = never.group(1).replace(" and ", ", ").split(", ")
    requests = {t for t in m.MsgType if not t & m.REPLY or t == m.MsgType.ERROR}
    assert {m.MsgType[n] for n in names} == requests - ANSWERED


def test_resend_defaults_and_flags_are_the_servers() -> None:
    from cc_server import app
    from cc_server.config import ServerConfig
    text = " ".join(section("LISTEN (0x30), UNLISTEN (0x31), NOTIFY (0x40), ACK (0x41)").split())
    defaults = ServerConfig()
    flags = app.build_parser().format_help()
    for phrase, flag, value in [
            ("default 1 s, `--renewal-resend-interval`", "--renewal-resend-interval",
             defaults.renewal_resend_interval == 1.0),
            ("at most 10 resends (`--renewal-resend-attempts`", "--renewal-resend-attempts",
             defaults.renewal_resend_attempts == 10),
            ("default 0.5 s, `--renewal-send-timeout`", "--renewal-send-timeout",
             defaults.renewal_send_timeout == 0.5),
            ("every 0.05 s, `--tick`", "--tick", defaults.tick == 0.05)]:
        assert phrase in text and flag in flags and value, phrase


def test_max_in_flight_help_and_section_5_agree() -> None:
    from cc_server import app
    help_text = " ".join(app.build_parser().format_help().split())
    flag_help = help_text[help_text.index("--max-in-flight N "):][:200]
    assert "PINGs not counted" in flag_help and "TOO_MANY_REQUESTS" in flag_help
    row = next(r for r in section("5. Limits").splitlines() if "`--max-in-flight`" in r)
    assert "PINGs not counted" in row and "TOO_MANY_REQUESTS" in row


def test_confirm_and_reserve_ttl_nil_is_documented_as_the_previous_length() -> None:
    text = " ".join(section("EXECUTE (0x10): a container").split())
    assert "nil = keep" not in text
    assert "< 0 or nil: the previous TTL length again, counted from now" in text
    assert "0: `INVALID_REQUEST` for that sub-request" in text


def test_operation_id_reused_is_documented_where_it_happens() -> None:
    row = next(r for r in section("7. Error codes").splitlines()
               if r.startswith("| `OPERATION_ID_REUSED`"))
    assert "container, admin" in row
    assert "`OPERATION_ID_REUSED`" in section("8. Exactly once, retries, flow control")


def test_the_plain_notation_examples_are_what_the_codec_writes() -> None:
    """Section 3: a balance created as 1E+3 reads 1000.00; never an exponent."""
    import msgpack

    from protocol.money import with_places
    for value, text in [("1E+3", "1000.00"), ("1E-10", "0.0000000001")]:
        assert f'`"{text}"`' in DOC, text
        wire = msgpack.unpackb(codec.pack(with_places(Decimal(value), "EUR")))
        assert wire.data == text.encode()


# ------------------------------------------------------------------ what a client author needs

def table_rows(title: str) -> list[list[str]]:
    """The rows of the tables of a section, as lists of cells (header rows included)."""
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in section(title).splitlines() if line.startswith("| ")]


def test_every_error_code_is_in_the_table_and_every_listed_one_exists() -> None:
    from protocol.errors import ErrorCode
    listed = {code for row in table_rows("7. Error codes")
              for code in re.findall(r"`([A-Z_]+)`", row[0])}
    assert listed == {c.value for c in ErrorCode}


def test_every_admin_command_is_documented_and_every_documented_one_exists() -> None:
    from protocol.codec import ADMIN_COMMANDS
    documented = {m_.group(1) for title in ("ADMIN (0x20) and ADMIN_RESULT (0xA0)",
                                            "Test controls: fault rules, request record, "
                                            "manual clock (ADMIN commands)")
                  for row in table_rows(title)
                  if (m_ := re.fullmatch(r"`([a-z_]+)`", row[0]))}
    assert documented == set(ADMIN_COMMANDS)


def test_the_commands_that_carry_op_are_the_mutating_ones() -> None:
    from protocol.codec import MUTATING_ADMIN
    admin = " ".join(section("ADMIN (0x20) and ADMIN_RESULT (0xA0)").split())
    listed = re.search(r"This is the one list \(.*?\): (.*?)\. The other commands \((.*?)\)",
                       admin)
    namespaces = " ".join(section("8. Exactly once, retries, flow control").split())
    assert listed and 'ids (on the commands section 4 lists under "Which commands carry ' \
        '`op`") form one namespace' in namespaces
    assert set(re.findall(r"`([a-z_]+)`", listed.group(1))) == MUTATING_ADMIN
    from protocol.codec import ADMIN_COMMANDS
    assert set(re.findall(r"`([a-z_]+)`", listed.group(2))) == \
        set(ADMIN_COMMANDS) - MUTATING_ADMIN


async def test_documented_answers_of_the_test_controls_and_the_clock() -> None:
    """Statements of the test-control section, checked against a server."""
    import cc_client
    from cc_client import ChargeableItem
    from cc_server.testing import ManualClock, running_server
    controls = " ".join(section("Test controls: fault rules, request record, manual clock "
                                "(ADMIN commands)").split())
    assert "**`record_clear`** on a server without `--record N` answers 0" in controls
    assert "the **exactly-once window**" in controls
    assert "run the timers due at the new time **before** they answer" in controls
    async with running_server(clock=ManualClock(1_800_000_000.0), dedup_window=60.0) as s, \
            cc_client.connect(s.url) as client:
        assert await client.admin.record_clear() == 0
        await client.admin.create_subscriber("doc-1", "1.00")
        op = client.create_session_start_operation(user_id="doc-1", service_id="DATA",
                                                   session_id="doc-s1")
        op.prepare_reserve("r-1", ChargeableItem("data", {"volume": 10}), ttl=30)
        assert (await op.execute()).ok
        assert len(s.server.dedup) >= 1
        await client.admin.clock_advance(31)     # the reply comes after the expiry
        assert (await client.admin.get_subscriber("doc-1")).reserved == 0
        await client.admin.clock_advance(60)     # the exactly-once window follows the clock
        assert len(s.server.dedup) == 1          # only that move's own outcome is left
        shown = await client.admin.clock_get()
        assert (shown["mode"], shown["speed"]) == ("manual", 0.0)
        with pytest.raises(cc_client.InvalidRequest, match="backwards"):
            await client.admin.clock_set("2000-01-01T00:00:00Z")
