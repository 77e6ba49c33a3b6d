"""The connection machine's transition tables, its own GOODBYE, and the request ids it
waits on (h11 style: both ends in memory, the time passed explicitly)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from protocol import codec
from protocol import connection as c
from protocol import messages as m
from protocol.connection import (
    AUTHENTICATING,
    CLIENT,
    CLIENT_TRANSITIONS,
    CLOSED,
    HANDSHAKE,
    LEAVING,
    OPEN,
    SERVER,
    SERVER_TRANSITIONS,
    STATE_NAMES,
    Closed,
    Connection,
    Goodbye,
    HelloReceived,
)
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import MAX_REQUEST_ID, Frame, encode_frame

T = m.MsgType
HELLO = m.Hello((1,), "test", None, None)
WELCOME = m.HelloOk(1, "cc-test", 5.0, 1 << 20, 1024, ("admin", "charging"))
EMPTY = codec.pack({})


def opened() -> tuple[Connection, Connection]:
    client, server = Connection(CLIENT, 0.0), Connection(SERVER, 0.0)
    (hello,) = server.receive_data(client.send_hello(HELLO), 0.0)
    assert isinstance(hello, HelloReceived)
    client.receive_data(server.accept(WELCOME, 0.0), 0.0)
    client.welcomed(WELCOME, 0.0)
    return client, server


# ------------------------------------------------------------------ the tables


@pytest.mark.parametrize("table", [CLIENT_TRANSITIONS, SERVER_TRANSITIONS])
def test_each_table_names_every_state_and_only_known_ones(table: object) -> None:
    assert isinstance(table, dict)
    states = set(range(len(STATE_NAMES)))
    assert set(table) == states
    for moves in table.values():
        assert set(moves.values()) <= states
    assert all(moves[c.END] == CLOSED for moves in table.values())
    assert set(table[CLOSED]) == {c.END}            # nothing leaves CLOSED


def test_the_state_changes_only_through_the_tables() -> None:
    # the file, not inspect.getsource: compiled, the class has no Python source
    text = (Path(__file__).resolve().parents[1] / "protocol" / "connection.py").read_text()
    source = text[text.index("class Connection:"):]
    assignments = re.findall(r"self\.state = (\w+)", source)
    assert assignments == ["HANDSHAKE", "state"]    # __init__ and _move, nowhere else


def test_a_handshake_walks_both_tables() -> None:
    client, server = Connection(CLIENT, 0.0), Connection(SERVER, 0.0)
    hello = client.send_hello(HELLO)
    assert client.state == AUTHENTICATING
    server.receive_data(hello, 0.0)
    assert server.state == AUTHENTICATING
    client.receive_data(server.accept(WELCOME, 0.0), 0.0)
    assert client.state == OPEN and server.state == OPEN
    with pytest.raises(ProtocolError, match="accept"):
        server.accept(WELCOME, 0.0)                  # OPEN has no ACCEPT move


def test_a_second_hello_is_refused_by_the_table() -> None:
    client = Connection(CLIENT, 0.0)
    client.send_hello(HELLO)
    with pytest.raises(ProtocolError):
        client.send_hello(HELLO)


# ------------------------------------------------------------------ our own GOODBYE


def test_our_goodbye_is_a_state_and_ends_new_requests() -> None:
    client, server = opened()
    client.send_goodbye("bye")
    assert client.state == LEAVING and client.open
    with pytest.raises(ProtocolError, match="closing"):
        client.send_request(T.EXECUTE, EMPTY)
    server.send_goodbye("shutting down")
    assert server.state == LEAVING
    events = server.receive_data(encode_frame(T.EXECUTE, 7, EMPTY), 0.0)
    assert isinstance(events[0], Frame)               # a server still answers what came


def test_the_peers_goodbye_after_ours_keeps_us_leaving() -> None:
    client, server = opened()
    server.send_goodbye("shutting down")
    events = server.receive_data(client.send_goodbye("me too"), 0.0)
    assert events == [Goodbye("me too")] and server.state == LEAVING


def test_a_goodbye_before_hello_ok_leaves_the_handshake_to_decide() -> None:
    server = Connection(SERVER, 0.0)
    assert server.send_goodbye("shutting down") != b""
    assert server.state == HANDSHAKE and not server.open


def test_no_goodbye_bytes_once_closed() -> None:
    client, _ = opened()
    client.close()
    assert client.send_goodbye("bye") == b"" and client.state == CLOSED


def test_a_client_goodbye_while_its_hello_is_checked_still_lets_accept() -> None:
    client, server = Connection(CLIENT, 0.0), Connection(SERVER, 0.0)
    events = server.receive_data(client.send_hello(HELLO) + client.send_goodbye("gone"), 0.0)
    assert [type(e) for e in events] == [HelloReceived, Goodbye]
    assert server.state == AUTHENTICATING
    server.accept(WELCOME, 0.0)                       # the verdict still comes
    assert server.state == OPEN


def test_a_goodbye_from_the_server_before_hello_ok_is_refused() -> None:
    client = Connection(CLIENT, 0.0)
    client.send_hello(HELLO)
    (closed,) = client.receive_data(codec.encode(m.Goodbye("x"), 0), 0.0)
    assert isinstance(closed, Closed) and closed.code == "PROTOCOL_ERROR"


# ------------------------------------------------------------------ replies and ids


@pytest.mark.parametrize("rid", [1, 2])
def test_a_reply_before_hello_ok_is_refused(rid: int) -> None:
    client = Connection(CLIENT, 0.0)
    client.send_hello(HELLO)                          # request id 1
    (closed,) = client.receive_data(encode_frame(T.EXECUTE_RESULT, rid, EMPTY), 0.0)
    assert isinstance(closed, Closed) and closed.code == "PROTOCOL_ERROR"
    assert not closed.by_peer and client.closed
    assert client.data_to_send()                      # our ERROR, to send before closing


def test_the_hellos_error_reply_is_still_a_reply() -> None:
    client = Connection(CLIENT, 0.0)
    client.send_hello(HELLO)
    refusal = codec.encode(m.Error(ErrorCode.UNSUPPORTED_VERSION, "no"), client.hello_id)
    (frame,) = client.receive_data(refusal, 0.0)
    assert isinstance(frame, Frame) and frame.type == T.ERROR


def test_the_machine_tracks_outstanding_requests() -> None:
    client, _ = opened()
    assert dict(client.outstanding) == {}             # the HELLO was answered
    rid, _ = client.send_request(T.EXECUTE, EMPTY)
    ping_id, _ = client.send_request(T.PING, EMPTY)
    assert dict(client.outstanding) == {rid: T.EXECUTE_RESULT, ping_id: T.PONG}
    (reply,) = client.receive_data(encode_frame(T.EXECUTE_RESULT, rid, EMPTY), 0.0)
    assert isinstance(reply, Frame)
    (error,) = client.receive_data(codec.encode(m.Error(ErrorCode.FORBIDDEN, "x"), ping_id),
                                   0.0)
    assert isinstance(error, Frame) and dict(client.outstanding) == {}


def test_a_reply_of_the_wrong_type_ends_the_connection() -> None:
    client, _ = opened()
    rid, _ = client.send_request(T.EXECUTE, EMPTY)
    (closed,) = client.receive_data(encode_frame(T.ADMIN_RESULT, rid, EMPTY), 0.0)
    assert isinstance(closed, Closed) and closed.code == "PROTOCOL_ERROR"
    assert "waits for EXECUTE_RESULT" in closed.message


def test_a_reply_given_up_on_is_dropped() -> None:
    client, _ = opened()
    rid, _ = client.send_request(T.EXECUTE, EMPTY)
    client.forget(rid)
    assert client.receive_data(encode_frame(T.EXECUTE_RESULT, rid, EMPTY), 0.0) == []
    assert client.state == OPEN


def test_ids_still_outstanding_are_skipped_after_a_wrap() -> None:
    client, _ = opened()
    client._next_id = MAX_REQUEST_ID - 2
    waiting = [client.send_request(T.EXECUTE, EMPTY)[0] for _ in range(3)]
    assert waiting == [MAX_REQUEST_ID - 1, MAX_REQUEST_ID, 1]
    client._next_id = MAX_REQUEST_ID - 2
    assert client.send_request(T.EXECUTE, EMPTY)[0] == 2   # no `busy` needed
