"""The worked example of PROTOCOL.md decodes to exactly what the document says."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

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
