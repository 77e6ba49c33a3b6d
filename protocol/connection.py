"""The rules of one connection, for both ends, as a sans-IO state machine (h11-style).

`Connection` is fed the bytes that arrived (`receive_data`) and the time (`tick`), and
gives back events for the application and bytes to send. It owns every rule that is not
about charging:

- the handshake: the client's first frame is HELLO; the server answers HELLO_OK or an
  ERROR with request id 0; nothing else flows before; a frame before HELLO_OK may carry
  at most `HELLO_MAX_FRAME` bytes of body;
- which frame is a request, a reply or a push (a reply type has bit 0x80 set; an ERROR
  with a non-zero request id is a reply, with request id 0 it ends the connection);
- request ids: each side numbers its own requests from 1, wrapping below 2**32; id 0
  means "no reply expected", and is refused on a message type that has a reply; a reply
  carries the id of the request it answers (`reply`);
- PING -> PONG (ERROR INVALID_REQUEST for a PING with a bad field), and the heartbeat: a
  side PINGs when it has sent nothing for one interval and counts the peer dead after
  three intervals of silence;
- the handshake deadline (server) and the idle deadline (server: no request for
  `idle_timeout`; PING/PONG do not count);
- GOODBYE (the peer's, and our own) and the connection-level ERROR (request id 0);
- the ids of our own requests still waiting for their reply, and the reply type each
  expects: a reply of another type ends the connection, and so does any reply but the
  HELLO's before HELLO_OK; a reply whose request was given up (`forget`) is dropped.

The states each side goes through, and the events that move it from one to the next, are
the two tables `CLIENT_TRANSITIONS` and `SERVER_TRANSITIONS`: a move that is not in its
side's table is refused (a `ProtocolError` for a call of ours, the end of the connection
with PROTOCOL_ERROR for a frame of the peer's).

It never touches a socket or a clock: the transport (`cc_server/connection.py`,
`cc_client/connection.py`) passes `now`, writes what `data_to_send()` and the `send_*`
methods return, and acts on the events. Event types::

    Frame        a request for the server application, or a reply for the client
    Push         (client) a NOTIFY from the server: no request of ours asked for it
    HelloReceived  (server) the HELLO to check; answer with `accept()` or `fail()`
    Answer       (server) what the machine answered itself (a PONG), in the stream's order
    Goodbye      the peer said GOODBYE: it sends nothing new; close when done
    Closed       the connection is over: `error` is what we sent (flush, then close),
                 or `peer_error` what the peer sent; `dead` when the peer went silent
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Final

from . import codec
from . import messages as m
from .errors import MAX_ERROR_TEXT, BadBody, ErrorCode, InvalidMessage, ProtocolError
from .frames import DEFAULT_MAX_FRAME, MAX_REQUEST_ID, Frame, FrameDecoder, encode_frame
from .liveness import Due, Liveness

CLIENT: Final = 0
SERVER: Final = 1

# states
HANDSHAKE: Final = 0        # nothing sent (client) or received (server) yet
AUTHENTICATING: Final = 1   # client: HELLO sent, its answer pending; server: HELLO received,
                            # its verdict pending (`accept` / `fail`)
OPEN: Final = 2
DRAINING: Final = 3         # the peer said GOODBYE (client: no new requests on this connection)
LEAVING: Final = 4          # we said GOODBYE (client: no new requests; a server still answers)
CLOSED: Final = 5
STATE_NAMES: Final = ("HANDSHAKE", "AUTHENTICATING", "OPEN", "DRAINING", "LEAVING", "CLOSED")

# the events that move the machine: the columns of the transition tables
SEND_HELLO: Final = "send HELLO"
GOT_HELLO: Final = "receive HELLO"
ACCEPT: Final = "accept the HELLO"
GOT_HELLO_OK: Final = "receive HELLO_OK"
SEND_GOODBYE: Final = "send GOODBYE"
GOT_GOODBYE: Final = "receive GOODBYE"
END: Final = "end"          # an ERROR sent or received, a silent peer, the transport closed

_Table = Mapping[int, Mapping[str, int]]


def _with_end(table: dict[int, dict[str, int]]) -> _Table:
    """`table` with END -> CLOSED in every state: any connection can end at any time."""
    for moves in table.values():
        moves[END] = CLOSED
    return table


#: state -> {event: next state}. Before HELLO_OK our GOODBYE changes nothing (the answer
#: to the HELLO, or the transport closing, decides), and nothing but the answer to the
#: HELLO may come: a GOODBYE from the server then is refused.
CLIENT_TRANSITIONS: Final[_Table] = _with_end({
    HANDSHAKE: {SEND_HELLO: AUTHENTICATING, SEND_GOODBYE: HANDSHAKE},
    AUTHENTICATING: {GOT_HELLO_OK: OPEN, SEND_GOODBYE: AUTHENTICATING},
    OPEN: {GOT_GOODBYE: DRAINING, SEND_GOODBYE: LEAVING},
    DRAINING: {GOT_GOODBYE: DRAINING, SEND_GOODBYE: LEAVING},
    LEAVING: {GOT_GOODBYE: LEAVING, SEND_GOODBYE: LEAVING},
    CLOSED: {},
})

#: state -> {event: next state}. A client's GOODBYE while its HELLO is being checked is
#: honoured (a Goodbye event) but leaves the verdict to come; a server shutting down says
#: GOODBYE to every connection, handshake or not, and before HELLO_OK that changes nothing.
SERVER_TRANSITIONS: Final[_Table] = _with_end({
    HANDSHAKE: {GOT_HELLO: AUTHENTICATING, SEND_GOODBYE: HANDSHAKE},
    AUTHENTICATING: {ACCEPT: OPEN, GOT_GOODBYE: AUTHENTICATING, SEND_GOODBYE: AUTHENTICATING},
    OPEN: {GOT_GOODBYE: DRAINING, SEND_GOODBYE: LEAVING},
    DRAINING: {GOT_GOODBYE: DRAINING, SEND_GOODBYE: LEAVING},
    LEAVING: {GOT_GOODBYE: LEAVING, SEND_GOODBYE: LEAVING},
    CLOSED: {},
})

HELLO_MAX_FRAME: Final = 64 * 1024    # body bytes of a frame before the handshake is done

T: Final = m.MsgType
REPLY: Final = m.REPLY
_EMPTY: Final = codec.pack({})
# plain ints for the per-frame paths: reading an IntEnum member costs ~0.7 us on 3.11
_ERROR: Final = int(T.ERROR)
_PING: Final = int(T.PING)
_PONG: Final = int(T.PONG)
_GOODBYE: Final = int(T.GOODBYE)
_HELLO: Final = int(T.HELLO)
_HELLO_OK: Final = int(T.HELLO_OK)
_ACK: Final = int(T.ACK)
#: Message types that have a reply, so may not use request id 0.
ANSWERED: Final = frozenset(int(t) for t in (T.HELLO, T.PING, T.EXECUTE, T.ADMIN, T.LISTEN,
                                      T.UNLISTEN))
#: What a client may send to a server after the HELLO (besides PING, PONG and GOODBYE).
_CLIENT_REQUESTS: Final = frozenset(int(t) for t in (T.EXECUTE, T.ADMIN, T.LISTEN, T.UNLISTEN,
                                              T.ACK))


def _name(msg_type: int) -> str:
    """A message type's name, or its number when it has none."""
    try:
        return T(msg_type).name
    except ValueError:
        return f"{msg_type:#04x}"


def _zero_id(msg_type: int) -> str:
    return (f"{T(msg_type).name} with request id 0: a message that gets a reply needs a "
            "request id other than 0 (0 is only for GOODBYE, ERROR, NOTIFY and ACK)")


@dataclass(frozen=True, slots=True)
class HelloReceived:
    """(server) The client's HELLO arrived; check it, then `accept()` or `fail()`."""

    frame: Frame


@dataclass(frozen=True, slots=True)
class Answer:
    """(server) Bytes the machine answered by itself: the PONG to a PING (or the ERROR
    for a PING with a bad field). They keep the stream's order: send them after the
    replies to the requests read before, and, like those, not while reading is paused."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Push:
    """(client) A frame the server pushed (NOTIFY), not a reply to one of our requests."""

    frame: Frame


@dataclass(frozen=True, slots=True)
class Goodbye:
    """The peer said GOODBYE: it is going away and starts nothing new."""

    reason: str


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is over. `error`: the ERROR we queued (send it, then close);
    `peer_error`: the peer's ERROR; `dead`: the peer went silent (close without a word)."""

    code: str
    message: str
    by_peer: bool = False
    dead: bool = False


Event = Frame | HelloReceived | Answer | Push | Goodbye | Closed


class Connection:
    """One end of one connection (`role` is CLIENT or SERVER)."""

    def __init__(self, role: int, now: float, heartbeat: float = 5.0,
                 handshake_deadline: float | None = None, idle_timeout: float = 0.0,
                 max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.role = role
        self.state = HANDSHAKE
        self._table = SERVER_TRANSITIONS if role == SERVER else CLIENT_TRANSITIONS
        # (server) until HELLO_OK a frame may carry at most HELLO_MAX_FRAME bytes of body
        self.decoder = FrameDecoder(min(max_frame, HELLO_MAX_FRAME) if role == SERVER
                                    else max_frame)
        self.liveness = Liveness(heartbeat, now)
        self.heartbeat_on = False            # from the end of the handshake
        self.handshake_deadline = handshake_deadline
        self._handshake_time = 0.0 if handshake_deadline is None else handshake_deadline - now
        self.idle_timeout = idle_timeout
        self.last_request = now
        self.hello_id = 0
        self._next_id = 0
        self._pings: set[int] = set()
        #: our requests waiting for their reply: request id -> the reply type it expects
        self._outstanding: dict[int, int] = {}
        self._out: list[bytes] = []

    # ------------------------------------------------------------------ state

    @property
    def open(self) -> bool:
        """True once the handshake is done and until the connection closes."""
        return OPEN <= self.state < CLOSED

    def _move(self, event: str) -> bool:
        """Take the transition `event` from the current state, if this side's table has
        it (True); else change nothing (False)."""
        state = self._table[self.state].get(event)
        if state is None:
            return False
        self.state = state
        return True

    def _must_move(self, event: str) -> None:
        """`_move`, for a call of ours: one the table does not allow raises."""
        if not self._move(event):
            raise ProtocolError(f"cannot {event} in state {STATE_NAMES[self.state]}")

    @property
    def outstanding(self) -> Mapping[int, int]:
        """Our requests still waiting for their reply: request id -> expected reply type."""
        return self._outstanding

    def forget(self, request_id: int) -> None:
        """Stop waiting for the reply to `request_id` (its caller gave up): when it comes,
        it is dropped."""
        self._outstanding.pop(request_id, None)

    @property
    def closed(self) -> bool:
        """True once a `Closed` event was given (or `close` was called)."""
        return self.state == CLOSED

    def next_request_id(self, busy: Container[int] = ()) -> int:
        """A fresh request id of ours: 1, 2, ... wrapping below 2**32, never 0, and
        none in `busy` (ids still waiting for their reply, after a wrap)."""
        outstanding = self._outstanding
        rid = self._next_id = self._next_id % MAX_REQUEST_ID + 1
        while rid in busy or rid in outstanding:   # only after 4 billion requests
            rid = self._next_id = self._next_id % MAX_REQUEST_ID + 1
        return rid

    # ------------------------------------------------------------------ receiving

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed received bytes; return the events they complete, in order.

        PINGs are answered (the PONG waits in `data_to_send()`), PONGs are swallowed.
        After a `Closed` event nothing more is read."""
        if self.state == CLOSED:
            return []
        self.liveness.received(now)
        try:
            frames = self.decoder.feed(data)
        except ProtocolError as exc:
            return [self._fail(exc.code, exc.message)]
        if not frames:
            return []
        if self.role == SERVER:
            return self._server_frames(frames, now)
        return self._client_frames(frames)

    def _server_frames(self, frames: list[Frame], now: float) -> list[Event]:
        events: list[Event] = []
        if self.state == HANDSHAKE:
            hello = self._server_hello(frames[0])
            events.append(hello)
            if type(hello) is Closed:
                return events
            frames = frames[1:]
        requests = _CLIENT_REQUESTS
        got_request = False
        for frame in frames:
            msg_type = frame.type
            if msg_type in requests:
                if not frame.request_id and msg_type != _ACK:
                    events.append(self._fail(ErrorCode.PROTOCOL_ERROR, _zero_id(msg_type)))
                    return events
                events.append(frame)
                got_request = True
                continue
            event = self._server_control(frame)
            if event is not None:
                events.append(event)
                if type(event) is Closed:
                    return events
        if got_request:
            self.last_request = now
        return events

    def _server_hello(self, frame: Frame) -> Event:
        if frame.type != _HELLO:
            return self._fail(ErrorCode.HANDSHAKE_REQUIRED, "the first frame must be HELLO")
        if frame.request_id == 0:
            return self._fail(ErrorCode.PROTOCOL_ERROR, _zero_id(_HELLO))
        self._move(GOT_HELLO)
        self.hello_id = frame.request_id
        return HelloReceived(frame)

    def _server_control(self, frame: Frame) -> Event | None:
        """A frame after the HELLO that is not a request for the application."""
        msg_type = frame.type
        if msg_type == _PING:
            answer = self._ping_answer(frame)
            return Answer(answer) if isinstance(answer, bytes) else answer
        if msg_type == _PONG:
            self._pings.discard(frame.request_id)
            return None
        if msg_type == _GOODBYE:
            return self._goodbye(frame)
        if msg_type == _ERROR and frame.request_id == 0:
            return self._peer_error(frame)
        if msg_type == _HELLO:
            return self._fail(ErrorCode.PROTOCOL_ERROR, "HELLO after the handshake")
        if msg_type & REPLY:      # we asked for nothing but PONGs
            return self._fail(ErrorCode.PROTOCOL_ERROR, f"unexpected reply type {msg_type:#04x}")
        return self._fail(ErrorCode.PROTOCOL_ERROR,
                          f"unexpected message type {msg_type:#04x}")

    def _client_frames(self, frames: list[Frame]) -> list[Event]:
        events: list[Event] = []
        outstanding = self._outstanding
        for frame in frames:
            msg_type = frame.type
            rid = frame.request_id
            if msg_type & REPLY and (rid or msg_type != _ERROR):   # a reply
                if msg_type == _PONG and rid in self._pings:
                    self._pings.discard(rid)
                    continue
                expected = outstanding.pop(rid, 0)
                if expected == 0 and self.state >= OPEN:
                    continue       # a reply its caller gave up waiting for (`forget`)
                if msg_type not in (expected, _ERROR):
                    events.append(self._wrong_reply(msg_type, rid, expected))
                    return events
                if msg_type == _HELLO_OK:
                    self._move(GOT_HELLO_OK)
                events.append(frame)
                continue
            event = self._client_control(frame)
            if event is not None:
                events.append(event)
                if isinstance(event, Closed):
                    return events
        return events

    def _wrong_reply(self, msg_type: int, rid: int, expected: int) -> Closed:
        if expected == 0:
            return self._fail(ErrorCode.PROTOCOL_ERROR,
                              f"{_name(msg_type)} with request id {rid} before HELLO_OK: "
                              "nothing but the answer to the HELLO comes before it")
        return self._fail(ErrorCode.PROTOCOL_ERROR,
                          f"{_name(msg_type)} answers request id {rid}, which waits for "
                          f"{_name(expected)}")

    def _client_control(self, frame: Frame) -> Event | None:
        msg_type = frame.type
        if msg_type == T.ERROR:
            return self._peer_error(frame)
        if self.state < OPEN:
            return self._fail(ErrorCode.PROTOCOL_ERROR,
                              f"message type {msg_type:#04x} before HELLO_OK")
        if msg_type == T.PING:
            return self._pong(frame)
        if msg_type == T.GOODBYE:
            return self._goodbye(frame)
        if msg_type == T.NOTIFY:
            return Push(frame)
        return self._fail(ErrorCode.PROTOCOL_ERROR, f"unexpected message type {msg_type:#04x}")

    def _pong(self, frame: Frame) -> Event | None:
        answer = self._ping_answer(frame)
        if isinstance(answer, bytes):
            self._out.append(answer)
            return None
        return answer

    def _ping_answer(self, frame: Frame) -> bytes | Closed:
        """The PONG, or the ERROR reply for a PING with a bad field; a `Closed` event
        for a PING no valid peer sends (request id 0, a body that is not a map)."""
        rid = frame.request_id
        if rid == 0:
            return self._fail(ErrorCode.PROTOCOL_ERROR, _zero_id(_PING))
        if frame.body != _EMPTY:
            try:
                codec.decode_body(_PING, frame.body)
            except BadBody as exc:
                return self._fail(exc.code, exc.message)
            except InvalidMessage as invalid:
                return codec.encode(m.Error(invalid.code, invalid.message[:MAX_ERROR_TEXT]), rid)
        return encode_frame(_PONG, rid, _EMPTY)

    def _goodbye(self, frame: Frame) -> Event:
        reason = ""
        try:
            msg = codec.decode_body(T.GOODBYE, frame.body)
            if isinstance(msg, m.Goodbye):
                reason = msg.reason
        except ProtocolError:
            pass   # a GOODBYE is honoured even when its reason does not decode
        if not self._move(GOT_GOODBYE):
            return self._fail(ErrorCode.PROTOCOL_ERROR,
                              f"GOODBYE in state {STATE_NAMES[self.state]}")
        return Goodbye(reason)

    def _peer_error(self, frame: Frame) -> Event:
        code, message = str(ErrorCode.PROTOCOL_ERROR), "undecodable ERROR"
        try:
            msg = codec.decode_body(T.ERROR, frame.body)
            if isinstance(msg, m.Error):
                code, message = str(msg.code), msg.message
        except ProtocolError:
            pass
        self._move(END)
        return Closed(code, message, by_peer=True)

    def _fail(self, code: ErrorCode, message: str) -> Closed:
        """Queue a connection-level ERROR and end the connection."""
        message = message[:MAX_ERROR_TEXT]
        self._out.append(codec.encode(m.Error(code, message), 0))
        self._move(END)
        return Closed(str(code), message)

    def fail(self, code: ErrorCode, message: str) -> Closed:
        """End the connection with a connection-level ERROR (its bytes wait in
        `data_to_send()`); what the application decided, e.g. a refused HELLO."""
        if self.state == CLOSED:
            return Closed(str(code), message[:MAX_ERROR_TEXT])
        return self._fail(code, message)

    # ------------------------------------------------------------------ handshake

    def send_hello(self, hello: m.Hello) -> bytes:
        """(client) The HELLO frame; its request id is `hello_id`."""
        if self.role != CLIENT or self.state != HANDSHAKE:
            raise ProtocolError("HELLO is the client's first frame, sent once")
        self._must_move(SEND_HELLO)
        self.hello_id = self.next_request_id()
        self._outstanding[self.hello_id] = _HELLO_OK
        return codec.encode(hello, self.hello_id)

    def accept(self, welcome: m.HelloOk, now: float) -> bytes:
        """(server) The HELLO passed: the HELLO_OK frame; requests flow from now on."""
        if self.role != SERVER or not self._move(ACCEPT):
            raise ProtocolError("accept() answers a HelloReceived event")
        self.decoder.max_body = welcome.max_frame
        self.liveness = Liveness(welcome.heartbeat, now)
        self.last_request = now             # idle time counts from HELLO_OK
        self._opened()
        return codec.encode(welcome, self.hello_id)

    def welcomed(self, welcome: m.HelloOk, now: float) -> None:
        """(client) HELLO_OK was decoded: adopt its heartbeat and frame limit."""
        if self.state < OPEN:      # HELLO_OK opened the machine when it was received
            raise ProtocolError("welcomed() follows the HELLO_OK reply")
        self.decoder.max_body = max(self.decoder.max_body, welcome.max_frame)
        self.liveness = Liveness(welcome.heartbeat, now)
        self._opened()

    def _opened(self) -> None:
        self.heartbeat_on = True
        self.handshake_deadline = None

    # ------------------------------------------------------------------ sending

    def send_request(self, msg_type: int, body: bytes,
                     busy: Container[int] = ()) -> tuple[int, bytes]:
        """(client) A request frame with a fresh request id, none in `busy`: (id, bytes)."""
        if self.state != OPEN:
            raise ProtocolError("no new requests: the connection is "
                                + ("not open yet" if self.state < OPEN else "closing"))
        outstanding = self._outstanding
        rid = self._next_id % MAX_REQUEST_ID + 1    # next_request_id, inlined
        while rid in busy or rid in outstanding:
            rid = rid % MAX_REQUEST_ID + 1
        self._next_id = rid
        outstanding[rid] = msg_type | REPLY
        return rid, encode_frame(msg_type, rid, body)

    def reply(self, msg_type: int, request_id: int, body: bytes) -> bytes:
        """(server) The frame of the reply to the request `request_id` (a Frame event).
        A method, not `staticmethod(encode_frame)`: compiled, that is a native call."""
        return encode_frame(msg_type, request_id, body)

    def send_oneway(self, msg_type: int, body: bytes) -> bytes:
        """A frame that expects no reply (request id 0): ACK without an answer, NOTIFY."""
        if msg_type in ANSWERED:
            raise ProtocolError(f"message type {msg_type:#04x} always has a reply")
        return encode_frame(msg_type, 0, body)

    def send_goodbye(self, reason: str) -> bytes:
        """GOODBYE: we are going away (a server still answers what it has read); no
        bytes once the connection is closed."""
        if not self._move(SEND_GOODBYE):
            return b""
        return codec.encode(m.Goodbye(reason), 0)

    def close(self) -> None:
        """The transport closed; nothing more is read or produced."""
        self._move(END)

    def data_to_send(self) -> bytes:
        """The bytes the machine produced by itself (PONG, PING, ERROR), then nothing."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def sent(self, now: float) -> None:
        """Bytes were written at `now` (for the heartbeat)."""
        self.liveness.sent(now)

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> list[Event]:
        """What the time asks for: a PING (in `data_to_send()`), or the end of the
        connection (handshake or idle deadline, or a silent peer)."""
        if self.state == CLOSED:
            return []
        deadline = self.handshake_deadline
        if deadline is not None and now >= deadline and not self.open:
            return [self._fail(ErrorCode.HANDSHAKE_TIMEOUT, "handshake not done within "
                               f"{self._handshake_time:g} s of connecting")]
        if not self.heartbeat_on:
            return []
        live = self.liveness
        due = live.due(now)
        if due is Due.DEAD:
            self._move(END)
            silent = now - live.last_received
            return [Closed("", f"no data from the peer for {silent:.1f} s", dead=True)]
        idle = self.idle_timeout
        if idle and self.role == SERVER and now - self.last_request >= idle:
            return [self._fail(ErrorCode.IDLE_TIMEOUT, f"no request for {idle:g} s")]
        if due is Due.PING:
            rid = self.next_request_id()
            self._pings.add(rid)
            if len(self._pings) > 8:   # PONGs that never came: keep the set small
                self._pings = {rid}
            self._out.append(encode_frame(T.PING, rid, _EMPTY))
            live.sent(now)
        return []

    def next_deadline(self, now: float) -> float:
        """The latest time `tick` should next be called (absolute, like `now`)."""
        times: list[float] = []
        if self.handshake_deadline is not None and not self.open:
            times.append(self.handshake_deadline)
        if self.heartbeat_on:
            times.append(now + self.liveness.next_check(now))
            if self.idle_timeout and self.role == SERVER:
                times.append(self.last_request + self.idle_timeout)
        return min(times) if times else now + self.liveness.interval
