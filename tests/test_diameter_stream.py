"""The Diameter stream decoder: any split of the bytes gives the same messages; the size
and header checks close the stream before the body is buffered."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cc_diameter as d
from cc_diameter.stream import MessageDecoder


def _messages(n: int) -> list[bytes]:
    return [d.encode(d.Ccr(f"s;{i}", "gw", "r", "ocs", "ctx", 2, i,
                           mscc=[d.Mscc(rating_group=i, used=[d.Units(total_octets=i)])])
                     .to_message(i, i)) for i in range(n)]


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 5), cuts=st.lists(st.integers(0, 2000), max_size=12))
def test_any_split_gives_the_same_messages(n: int, cuts: list[int]) -> None:
    msgs = _messages(n)
    stream = b"".join(msgs)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    dec = MessageDecoder()
    got: list[bytes] = []
    for a, b in itertools.pairwise(points):
        got += dec.feed(stream[a:b])
    assert got == msgs
    assert dec.buffered == 0


def test_one_byte_at_a_time() -> None:
    msgs = _messages(3)
    dec = MessageDecoder()
    got: list[bytes] = []
    for byte in b"".join(msgs):
        got += dec.feed(bytes([byte]))
    assert got == msgs


def test_size_limit_is_checked_from_the_header() -> None:
    dec = MessageDecoder(max_size=64)
    raw = _messages(1)[0]
    assert len(raw) > 64
    with pytest.raises(d.FramingError, match="exceeds the limit of 64"):
        dec.feed(raw[:20])       # the header alone is enough to refuse it


@pytest.mark.parametrize("head", [
    bytes.fromhex("02000014") + bytes(16),     # version 2
    bytes.fromhex("01000010") + bytes(16),     # length 16 < 20
    bytes.fromhex("01000015") + bytes(16),     # length not a multiple of 4
])
def test_bad_headers_are_framing_errors(head: bytes) -> None:
    with pytest.raises(d.FramingError):
        MessageDecoder().feed(head)


def test_decode_checks_the_whole_length() -> None:
    raw = _messages(1)[0]
    with pytest.raises(d.FramingError):
        d.decode(raw + b"\0\0\0\0")
    with pytest.raises(d.FramingError):
        d.decode(raw[:10])
