"""Frame layer: byte vectors, arbitrary splits, size limit, malformed headers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import FrameTooLarge, MalformedFrame
from protocol.frames import HEADER_SIZE, Frame, FrameDecoder, encode_frame


def test_header_byte_vector() -> None:
    assert encode_frame(0x10, 0x01020304, b"\x80") == bytes.fromhex(
        "00000001" "10" "00" "0000" "01020304" "80")
    assert HEADER_SIZE == 12


def test_decode_byte_vector() -> None:
    raw = bytes.fromhex("00000002" "90" "00" "0000" "00000007" "8100")
    assert FrameDecoder().feed(raw) == [Frame(0x90, 0, 7, b"\x81\x00")]


def test_empty_body_and_several_frames_in_one_read() -> None:
    data = encode_frame(2, 1, b"") + encode_frame(3, 2, b"xyz") + encode_frame(4, 3, b"")
    frames = FrameDecoder().feed(data)
    assert [(f.type, f.request_id, f.body) for f in frames] == [
        (2, 1, b""), (3, 2, b"xyz"), (4, 3, b"")]


def test_partial_frame_waits_for_the_rest() -> None:
    decoder = FrameDecoder()
    data = encode_frame(0x10, 9, b"hello world")
    assert decoder.feed(data[:5]) == []
    assert decoder.feed(data[5:14]) == []
    assert decoder.buffered == 14
    assert decoder.feed(data[14:]) == [Frame(0x10, 0, 9, b"hello world")]
    assert decoder.buffered == 0


def test_byte_at_a_time() -> None:
    decoder = FrameDecoder()
    data = encode_frame(1, 1, b"a" * 100) + encode_frame(2, 2, b"b")
    out: list[Frame] = []
    for i in range(len(data)):
        out += decoder.feed(data[i:i + 1])
    assert [f.body for f in out] == [b"a" * 100, b"b"]


def test_size_limit_checked_as_soon_as_header_arrives() -> None:
    decoder = FrameDecoder(max_body=100)
    header_only = encode_frame(0x10, 1, b"x" * 101)[:HEADER_SIZE]
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(header_only)
    assert info.value.code == "FRAME_TOO_LARGE"


def test_limit_is_inclusive() -> None:
    assert FrameDecoder(max_body=4).feed(encode_frame(1, 1, b"abcd"))[0].body == b"abcd"


def test_huge_length_prefix_refused_without_buffering() -> None:
    decoder = FrameDecoder()
    with pytest.raises(FrameTooLarge):
        decoder.feed(b"\xff\xff\xff\xff" + b"\x10\x00\x00\x00\x00\x00\x00\x01")


@pytest.mark.parametrize("header", [
    "00000000" "10" "01" "0000" "00000001",   # flags set
    "00000000" "10" "00" "0001" "00000001",   # reserved set
])
def test_nonzero_flags_or_reserved_are_malformed(header: str) -> None:
    with pytest.raises(MalformedFrame):
        FrameDecoder().feed(bytes.fromhex(header))


frames_st = st.lists(st.tuples(st.integers(0, 255), st.integers(0, 2**32 - 1),
                               st.binary(max_size=300)), max_size=8)


@given(frames_st, st.data())
def test_any_split_yields_the_same_frames(frames: list[tuple[int, int, bytes]],
                                          data: st.DataObject) -> None:
    stream = b"".join(encode_frame(t, r, b) for t, r, b in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = FrameDecoder()
    out: list[Frame] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        out += decoder.feed(stream[start:cut])
        start = cut
    assert [(f.type, f.request_id, f.body) for f in out] == frames
    assert decoder.buffered == 0


@given(st.binary(max_size=200), st.integers(1, 50))
def test_random_bytes_decode_or_raise_protocol_error(data: bytes, chunk: int) -> None:
    decoder = FrameDecoder(max_body=64)
    try:
        for i in range(0, len(data), chunk):
            for frame in decoder.feed(data[i:i + chunk]):
                assert len(frame.body) <= 64
    except (FrameTooLarge, MalformedFrame):
        pass
