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
