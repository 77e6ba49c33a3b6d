"""The sans-IO connection state machine, both ends wired together in memory (h11 style).

No sockets and no sleeps: the pair moves bytes between the two machines and the tests
pass the time explicitly.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import codec
from protocol import messages as m
from protocol.connection import (
    AUTHENTICATING,
    CLIENT,
    CLOSED,
    DRAINING,
    HANDSHAKE,
    OPEN,
    SERVER,
    Answer,
    Closed,
    Connection,
    Event,
    Goodbye,
    HelloReceived,
    Push,
)
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import MAX_REQUEST_ID, Frame, encode_frame

T = m.MsgType
HELLO = m.Hello((1,), "test", None, None)
WELCOME = m.HelloOk(1, "cc-test", 5.0, 1 << 20, 1024, ("admin", "charging"))


class ConnectionPair:
    """A client and a server machine joined by an in-memory pipe."""

    def __init__(self, now: float = 0.0, **server_options: Any) -> None:
        self.now = now
        self.client = Connection(CLIENT, now)
        self.server = Connection(SERVER, now, **server_options)

    def to_server(self, data: bytes) -> list[Event]:
        return self.server.receive_data(data, self.now)

    def to_client(self, data: bytes) -> list[Event]:
        return self.client.receive_data(data, self.now)

    def handshake(self) -> None:
        events = self.to_server(self.client.send_hello(HELLO))
        assert len(events) == 1 and isinstance(events[0], HelloReceived)
        reply = self.to_client(self.server.accept(WELCOME, self.now))
        assert isinstance(reply[0], Frame) and reply[0].type == T.HELLO_OK
        self.client.welcomed(WELCOME, self.now)

    def answers(self, events: list[Event]) -> bytes:
        """The server's own answers (PONGs) among `events`, which hold nothing else."""
        assert all(isinstance(e, Answer) for e in events), events
        return b"".join(e.data for e in events if isinstance(e, Answer))

    def flush(self) -> tuple[list[Event], list[Event]]:
        """Deliver what each machine produced by itself; events on (client, server)."""
        return self.to_client(self.server.data_to_send()), \
            self.to_server(self.client.data_to_send())


def error_of(data: bytes) -> m.Error:
    frame = Connection(CLIENT, 0).decoder.feed(data)[-1]
    msg = codec.decode(frame)
    assert isinstance(msg, m.Error)
    return msg


def test_handshake_opens_both_ends() -> None:
    pair = ConnectionPair()
    assert pair.client.state == HANDSHAKE and pair.server.state == HANDSHAKE
    pair.handshake()
    assert pair.client.state == OPEN and pair.server.state == OPEN


def test_server_holds_the_hello_until_the_verdict() -> None:
    pair = ConnectionPair()
    pair.to_server(pair.client.send_hello(HELLO))
    assert pair.server.state == AUTHENTICATING
    closed = pair.server.fail(ErrorCode.AUTHENTICATION_FAILED, "unknown user or wrong password")
    assert pair.server.closed and closed.code == "AUTHENTICATION_FAILED"
    events = pair.to_client(pair.server.data_to_send())
    assert events == [Closed("AUTHENTICATION_FAILED", "unknown user or wrong password",
                             by_peer=True)]
    assert pair.client.closed


def test_first_frame_must_be_hello() -> None:
    pair = ConnectionPair()
    events = pair.to_server(encode_frame(T.EXECUTE, 1, codec.pack({})))
    assert isinstance(events[0], Closed) and events[0].code == "HANDSHAKE_REQUIRED"
    assert error_of(pair.server.data_to_send()).code == ErrorCode.HANDSHAKE_REQUIRED


def test_frames_before_the_welcome_are_capped_at_64_kib() -> None:
    pair = ConnectionPair()
    pair.to_server(pair.client.send_hello(HELLO))
    header = (65 * 1024).to_bytes(4, "big") + \
        bytes([T.EXECUTE, 0, 0, 0]) + (2).to_bytes(4, "big")
    events = pair.to_server(header)
    assert isinstance(events[0], Closed) and events[0].code == "FRAME_TOO_LARGE"


@pytest.mark.parametrize("msg_type", [T.HELLO, T.PING, T.EXECUTE, T.ADMIN, T.LISTEN,
                                      T.UNLISTEN])
def test_request_id_0_is_refused_where_a_reply_is_due(msg_type: int) -> None:
    pair = ConnectionPair()
    if msg_type != T.HELLO:
        pair.handshake()
    events = pair.to_server(encode_frame(msg_type, 0, codec.pack({})))
    assert isinstance(events[-1], Closed) and events[-1].code == "PROTOCOL_ERROR"
    assert error_of(pair.server.data_to_send()).code == ErrorCode.PROTOCOL_ERROR
    assert pair.server.closed


def test_ack_may_use_request_id_0() -> None:
    pair = ConnectionPair()
    pair.handshake()
    ack = pair.client.send_oneway(T.ACK, codec.pack({"id": 1, "confirm": False}))
    events = pair.to_server(ack)
    assert len(events) == 1 and isinstance(events[0], Frame) and events[0].request_id == 0


def test_oneway_refuses_types_that_have_a_reply() -> None:
    with pytest.raises(ProtocolError):
        Connection(CLIENT, 0).send_oneway(T.EXECUTE, b"")


def test_requests_reach_the_server_application_and_replies_the_client() -> None:
    pair = ConnectionPair()
    pair.handshake()
    rid, data = pair.client.send_request(T.EXECUTE, codec.pack({}))
    events = pair.to_server(data)
    assert [(e.type, e.request_id) for e in events if isinstance(e, Frame)] == \
        [(T.EXECUTE, rid)]
    events = pair.to_client(encode_frame(T.EXECUTE_RESULT, rid, codec.pack({})))
    assert isinstance(events[0], Frame) and events[0].request_id == rid


def test_ping_is_answered_and_the_pong_swallowed() -> None:
    pair = ConnectionPair()
    pair.handshake()
    pair.now += 5.0                       # one heartbeat interval with nothing sent
    assert pair.client.tick(pair.now) == []
    ping = pair.client.data_to_send()
    assert ping[4] == T.PING and int.from_bytes(ping[8:12], "big") != 0
    (answer,) = pair.to_server(ping)      # the PONG, in the stream's order
    assert isinstance(answer, Answer) and answer.data[4] == T.PONG
    assert pair.server.data_to_send() == b""
    assert pair.to_client(answer.data) == []


def test_an_idle_connection_survives_many_heartbeat_intervals() -> None:
    pair = ConnectionPair()
    pair.handshake()
    pings = 0
    for _ in range(28):                   # 7 intervals of 5 s, no request at all
        pair.now += 1.25
        assert pair.client.tick(pair.now) == [] and pair.server.tick(pair.now) == []
        to_server, to_client = pair.client.data_to_send(), pair.server.data_to_send()
        pings += (to_server[4:5] == bytes([T.PING])) + (to_client[4:5] == bytes([T.PING]))
        pongs = pair.answers(pair.to_server(to_server))
        assert pair.to_client(to_client) == []
        assert pair.to_client(pongs) == []   # the PONGs, swallowed by their PING's sender
        assert pair.flush() == ([], [])
    assert pings >= 7
    assert pair.client.state == OPEN and pair.server.state == OPEN


def test_a_notify_is_a_push_for_the_client() -> None:
    pair = ConnectionPair()
    pair.handshake()
    data = encode_frame(T.NOTIFY, 0, codec.pack({}))
    events = pair.to_client(data)
    assert len(events) == 1 and isinstance(events[0], Push)
    assert events[0].frame.type == T.NOTIFY and pair.client.state == OPEN


def test_a_silent_peer_is_dead_after_three_intervals() -> None:
    pair = ConnectionPair()
    pair.handshake()
    pair.now += 14.9
    pair.server.tick(pair.now)
    assert not pair.server.closed
    assert pair.server.data_to_send()[4] == T.PING   # it still tries
    pair.now += 0.2
    events = pair.server.tick(pair.now)
    assert len(events) == 1 and isinstance(events[0], Closed) and events[0].dead
    assert pair.server.data_to_send() == b""   # closed without an ERROR
    assert pair.server.closed


def test_handshake_deadline() -> None:
    pair = ConnectionPair(handshake_deadline=10.0)
    assert pair.server.next_deadline(0.0) == 10.0
    pair.now = 10.0
    events = pair.server.tick(pair.now)
    assert isinstance(events[0], Closed) and events[0].code == "HANDSHAKE_TIMEOUT"
    assert error_of(pair.server.data_to_send()).code == ErrorCode.HANDSHAKE_TIMEOUT


def test_idle_deadline_shorter_than_the_heartbeat_fires_on_time() -> None:
    pair = ConnectionPair(idle_timeout=2.0)
    pair.handshake()
    assert pair.server.next_deadline(pair.now) == pytest.approx(2.0)
    pair.now = 1.0                         # a PING is no request: it does not count
    pair.to_server(encode_frame(T.PING, 9, codec.pack({})))
    pair.now = 2.0
    events = pair.server.tick(pair.now)
    assert isinstance(events[0], Closed) and events[0].code == "IDLE_TIMEOUT"


def test_goodbye_drains_the_client() -> None:
    pair = ConnectionPair()
    pair.handshake()
    events = pair.to_client(pair.server.send_goodbye("shutting down"))
    assert events == [Goodbye("shutting down")]
    assert pair.client.state == DRAINING
    with pytest.raises(ProtocolError):
        pair.client.send_request(T.EXECUTE, b"")


def test_error_with_id_0_closes_and_with_an_id_is_a_reply() -> None:
    pair = ConnectionPair()
    pair.handshake()
    rid, _ = pair.client.send_request(T.EXECUTE, codec.pack({}))
    reply = codec.encode(m.Error(ErrorCode.USER_UNKNOWN, "no such user"), rid)
    events = pair.to_client(reply)
    assert isinstance(events[0], Frame) and events[0].request_id == rid
    assert pair.client.state == OPEN
    events = pair.to_client(codec.encode(m.Error(ErrorCode.SHUTTING_DOWN, "bye"), 0))
    assert events == [Closed("SHUTTING_DOWN", "bye", by_peer=True)]
    assert pair.client.state == CLOSED


def test_server_refuses_reply_types_and_a_second_hello() -> None:
    for msg_type in (T.EXECUTE_RESULT, T.HELLO, T.NOTIFY, 0x55):
        pair = ConnectionPair()
        pair.handshake()
        events = pair.to_server(encode_frame(msg_type, 3, codec.pack({})))
        assert isinstance(events[-1], Closed) and events[-1].code == "PROTOCOL_ERROR"


def test_request_ids_wrap_and_skip_0() -> None:
    conn = Connection(CLIENT, 0)
    conn._next_id = MAX_REQUEST_ID - 1
    assert [conn.next_request_id() for _ in range(3)] == [MAX_REQUEST_ID, 1, 2]


def test_request_ids_skip_busy_ones_after_a_wrap() -> None:
    pair = ConnectionPair()
    pair.handshake()
    pair.client._next_id = MAX_REQUEST_ID - 1
    busy = {1, 2}                          # still waiting for their replies
    ids = [pair.client.send_request(T.EXECUTE, b"", busy)[0] for _ in range(3)]
    assert ids == [MAX_REQUEST_ID, 3, 4]
    assert pair.client.next_request_id(busy) == 5


def test_nothing_is_read_after_closed() -> None:
    pair = ConnectionPair()
    pair.to_server(encode_frame(T.EXECUTE, 1, codec.pack({})))
    assert pair.to_server(pair.client.send_hello(HELLO)) == []


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=12))
def test_any_split_of_the_stream_gives_the_same_events(cuts: list[int]) -> None:
    stream = b"".join([
        codec.encode(HELLO, 1),
        encode_frame(T.PING, 2, codec.pack({})),
        encode_frame(T.EXECUTE, 3, codec.pack({"x": 1})),
        encode_frame(T.ACK, 0, codec.pack({"id": 1, "confirm": False})),
    ])
    server = Connection(SERVER, 0)
    events: list[Event] = []
    pos = 0
    for cut in cuts * 10:
        if pos >= len(stream):
            break
        events += server.receive_data(stream[pos:pos + cut], 0)
        pos += cut
    events += server.receive_data(stream[pos:], 0)
    kinds = [type(e).__name__ if not isinstance(e, Frame) else e.type for e in events]
    assert kinds == ["HelloReceived", "Answer", T.EXECUTE, T.ACK]


# ------------------------------------------------------------------ server rules


def test_the_server_answers_a_ping_in_the_streams_order() -> None:
    pair = ConnectionPair()
    pair.handshake()
    events = pair.to_server(encode_frame(T.EXECUTE, 5, codec.pack({})) +
                            encode_frame(T.PING, 6, codec.pack({})) +
                            encode_frame(T.EXECUTE, 7, codec.pack({})))
    assert [type(e).__name__ for e in events] == ["Frame", "Answer", "Frame"]
    assert isinstance(events[1], Answer)
    pong = Connection(CLIENT, 0).decoder.feed(events[1].data)[0]
    assert (pong.type, pong.request_id) == (T.PONG, 6)
    assert pair.server.data_to_send() == b""


def test_pings_read_before_hello_ok_are_answered_after_it() -> None:
    pair = ConnectionPair()
    events = pair.to_server(pair.client.send_hello(HELLO) +
                            encode_frame(T.PING, 9, codec.pack({})) +
                            encode_frame(T.EXECUTE, 10, codec.pack({})))
    assert [type(e).__name__ for e in events] == ["HelloReceived", "Answer", "Frame"]
    assert pair.server.state == AUTHENTICATING
    assert pair.server.data_to_send() == b""   # nothing flows ahead of HELLO_OK


def test_a_ping_with_a_bad_field_gets_an_error_reply_and_stays_open() -> None:
    pair = ConnectionPair()
    pair.handshake()
    rid, ping = pair.client.send_request(T.PING, codec.pack({"x": 1}))
    (answer,) = pair.to_server(ping)
    assert isinstance(answer, Answer)
    (frame,) = pair.to_client(answer.data)
    assert isinstance(frame, Frame) and frame.request_id == rid
    assert error_of(answer.data).code == ErrorCode.INVALID_REQUEST
    assert pair.server.state == OPEN


@pytest.mark.parametrize("body", [codec.pack({}) + codec.pack({}), codec.pack([1])])
def test_a_ping_whose_body_is_not_one_map_ends_the_connection(body: bytes) -> None:
    pair = ConnectionPair()
    pair.handshake()
    (closed,) = pair.to_server(encode_frame(T.PING, 4, body))
    assert isinstance(closed, Closed) and closed.code == "PROTOCOL_ERROR"
    assert error_of(pair.server.data_to_send()).code == ErrorCode.PROTOCOL_ERROR


def test_request_id_0_refusal_names_the_message_and_the_rule() -> None:
    pair = ConnectionPair()
    pair.handshake()
    (closed,) = pair.to_server(encode_frame(T.EXECUTE, 0, codec.pack({})))
    assert isinstance(closed, Closed)
    assert closed.message.startswith("EXECUTE with request id 0")
    assert "request id other than 0" in closed.message


def test_the_server_frames_a_reply_with_its_requests_id() -> None:
    pair = ConnectionPair()
    pair.handshake()
    rid, data = pair.client.send_request(T.ADMIN, codec.pack({}))
    (request,) = pair.to_server(data)
    assert isinstance(request, Frame)
    events = pair.to_client(pair.server.reply(T.ADMIN_RESULT, request.request_id,
                                              codec.pack({})))
    assert isinstance(events[0], Frame) and events[0].request_id == rid
    assert events[0].type == T.ADMIN_RESULT


def test_a_client_error_with_id_0_closes_the_server_without_a_word() -> None:
    pair = ConnectionPair()
    pair.handshake()
    events = pair.to_server(codec.encode(m.Error(ErrorCode.PROTOCOL_ERROR, "bad PONG"), 0))
    assert events == [Closed("PROTOCOL_ERROR", "bad PONG", by_peer=True)]
    assert pair.server.closed and pair.server.data_to_send() == b""


def test_an_error_reply_from_the_client_answers_nothing_the_server_asked() -> None:
    pair = ConnectionPair()
    pair.handshake()
    (closed,) = pair.to_server(codec.encode(m.Error(ErrorCode.PROTOCOL_ERROR, "x"), 3))
    assert isinstance(closed, Closed) and not closed.by_peer
    assert closed.message == "unexpected reply type 0xff"


def test_a_pong_to_the_servers_ping_is_swallowed_and_a_stray_one_too() -> None:
    pair = ConnectionPair()
    pair.handshake()
    assert pair.to_server(encode_frame(T.PONG, 77, codec.pack({}))) == []
    assert pair.server.state == OPEN


def test_a_goodbye_drains_the_server_and_requests_before_it_still_come() -> None:
    pair = ConnectionPair()
    pair.handshake()
    events = pair.to_server(encode_frame(T.EXECUTE, 5, codec.pack({})) +
                            pair.client.send_goodbye("done"))
    assert isinstance(events[0], Frame) and events[1] == Goodbye("done")
    assert pair.server.state == DRAINING


def test_idle_time_counts_from_hello_ok() -> None:
    pair = ConnectionPair(idle_timeout=2.0)
    pair.to_server(pair.client.send_hello(HELLO))
    pair.now = 1.5                         # the verdict took a while
    pair.server.accept(WELCOME, pair.now)
    assert pair.server.next_deadline(pair.now) == pytest.approx(3.5)
    pair.now = 3.0
    assert pair.server.tick(pair.now) == []
    pair.now = 3.5
    events = pair.server.tick(pair.now)
    assert isinstance(events[0], Closed) and events[0].code == "IDLE_TIMEOUT"


def test_handshake_timeout_says_how_long_was_allowed() -> None:
    pair = ConnectionPair(now=100.0, handshake_deadline=110.0)
    (closed,) = pair.server.tick(110.0)
    assert isinstance(closed, Closed)
    assert closed.message == "handshake not done within 10 s of connecting"


def test_a_small_max_frame_also_caps_frames_before_the_handshake() -> None:
    server = Connection(SERVER, 0, max_frame=1024)
    hello = codec.encode(m.Hello((1,), "x" * 2000), 1)
    (closed,) = server.receive_data(hello, 0)
    assert isinstance(closed, Closed) and closed.code == "FRAME_TOO_LARGE"
