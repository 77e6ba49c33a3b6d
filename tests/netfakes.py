"""Tiny network fakes for transport tests, asyncio streams on 127.0.0.1 only.

- `FrameStream`: one socket spoken to frame by frame (read, send, wait for close).
- `raw_connect` / `raw_hello`: a hand-driven client socket.
- `FakeServer`: a listening socket whose connections a test coroutine drives.
- `Proxy`: a TCP relay to a real server that sees every frame both ways and can cut a
  connection right after (without forwarding) a chosen reply.

Every wait is bounded by a timeout; nothing here listens beyond loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from protocol import codec
from protocol import messages as m
from protocol.frames import Frame, FrameDecoder, encode_frame

LOOPBACK = "127.0.0.1"
T = m.MsgType
BIG = 1 << 30   # decoder limit of the fakes: they must see whatever a peer announces


class FrameStream:
    """Frames over one asyncio stream pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 max_body: int = BIG) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder(max_body)
        self._frames: list[Frame] = []
        self.eof = False

    async def read_frame(self, within: float = 2.0) -> Frame | None:
        """The next frame, or None at end of stream (TimeoutError if none in time)."""
        async with asyncio.timeout(within):
            while not self._frames:
                if self.eof:
                    return None
                try:
                    data = await self.reader.read(65536)
                except (ConnectionError, OSError):
                    data = b""
                if not data:
                    self.eof = True
                    continue
                self._frames.extend(self.decoder.feed(data))
            return self._frames.pop(0)

    async def read_message(self, within: float = 2.0) -> tuple[Frame, m.Message]:
        """The next frame and its decoded message (AssertionError at end of stream)."""
        frame = await self.read_frame(within)
        assert frame is not None, "the peer closed the connection"
        return frame, codec.decode(frame)

    def send(self, msg: m.Message, request_id: int = 0) -> None:
        """Write one message."""
        self.writer.write(codec.encode(msg, request_id))

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are."""
        self.writer.write(data)

    async def closed_within(self, within: float) -> bool:
        """Read (discarding frames) until the peer closes; False if it is still open."""
        try:
            async with asyncio.timeout(within):
                while await self.read_frame(within) is not None:
                    pass
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        """Drop the socket now."""
        self.writer.transport.abort()


async def raw_connect(host: str, port: int, rcvbuf: int | None = None) -> FrameStream:
    """A plain TCP connection to (host, port), optionally with a small receive buffer."""
    if rcvbuf is None:
        reader, writer = await asyncio.open_connection(host, port)
        return FrameStream(reader, writer)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)   # before connect: no autotune
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    reader, writer = await asyncio.open_connection(sock=sock)
    return FrameStream(reader, writer)


async def raw_hello(stream: FrameStream, versions: tuple[int, ...] = (1,),
                    request_id: int = 1) -> m.Message:
    """Send HELLO and return the server's answer (HelloOk or Error)."""
    stream.send(m.Hello(versions, "raw-test-client"), request_id)
    frame, msg = await stream.read_message()
    assert frame.request_id == request_id or isinstance(msg, m.Error)
    return msg


async def serve_handshake(stream: FrameStream, heartbeat: float = 5.0,
                          max_frame: int = 1 << 20) -> m.Hello:
    """Fake-server side of the handshake: read HELLO, answer HELLO_OK."""
    frame, msg = await stream.read_message()
    assert isinstance(msg, m.Hello), f"expected HELLO, got {msg!r}"
    stream.send(m.HelloOk(1, "fake-server", heartbeat, max_frame, 1024,
                          ("admin", "charging")), frame.request_id)
    return msg


Handler = Callable[[FrameStream], Awaitable[None]]


class FakeServer:
    """Listens on 127.0.0.1:<free port>; each connection runs `handler(stream)`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.streams: list[FrameStream] = []
        self.errors: list[BaseException] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    async def _on_connection(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        stream = FrameStream(reader, writer)
        self.streams.append(stream)
        try:
            await self.handler(stream)
        except (asyncio.CancelledError, ConnectionError, TimeoutError):
            pass
        except BaseException as exc:   # surfaced by the test through `errors`
            self.errors.append(exc)
        finally:
            self._tasks.discard(task)

    async def __aenter__(self) -> FakeServer:
        self._server = await asyncio.start_server(self._on_connection, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        for stream in self.streams:
            stream.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await asyncio.gather(*self._tasks, return_exceptions=True)
                await self._server.wait_closed()


ReplyHook = Callable[[Frame], bool]   # True: cut the connection instead of forwarding


class Proxy:
    """A TCP relay 127.0.0.1:<free port> -> upstream that parses frames both ways.

    `cut_on_reply(frame)` is asked about every server->client frame; when it says True the
    frame is not forwarded and both sides of that connection are dropped at once.
    `outstanding` tracks client requests (request id != 0) not yet answered.
    """

    def __init__(self, upstream_host: str, upstream_port: int,
                 cut_on_reply: ReplyHook | None = None) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.cut_on_reply = cut_on_reply
        self.connections = 0
        self.cuts = 0
        self.requests: list[Frame] = []
        self.replies: list[Frame] = []
        self.outstanding: set[tuple[int, int]] = set()
        self.max_outstanding = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    async def _on_connection(self, c_reader: asyncio.StreamReader,
                             c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        conn_no = self.connections
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            c_writer.transport.abort()
            return
        self._writers += [c_writer, s_writer]

        def cut() -> None:
            self.cuts += 1
            c_writer.transport.abort()
            s_writer.transport.abort()

        async def upstream() -> None:     # client -> server
            decoder = FrameDecoder(BIG)
            while data := await c_reader.read(65536):
                for f in decoder.feed(data):
                    if not f.type & m.REPLY and f.request_id and f.type != T.HELLO:
                        self.requests.append(f)
                        self.outstanding.add((conn_no, f.request_id))
                        self.max_outstanding = max(self.max_outstanding,
                                                   len(self.outstanding))
                    s_writer.write(encode_frame(f.type, f.request_id, f.body))
            s_writer.transport.abort()

        async def downstream() -> None:   # server -> client
            decoder = FrameDecoder(BIG)
            while data := await s_reader.read(65536):
                for f in decoder.feed(data):
                    if f.type & m.REPLY or f.type == T.ERROR:
                        self.replies.append(f)
                        self.outstanding.discard((conn_no, f.request_id))
                    if self.cut_on_reply is not None and self.cut_on_reply(f):
                        cut()
                        return
                    c_writer.write(encode_frame(f.type, f.request_id, f.body))
            c_writer.transport.abort()

        try:
            await asyncio.gather(upstream(), downstream())
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            c_writer.transport.abort()
            s_writer.transport.abort()
            self._tasks.discard(task)

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._on_connection, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await asyncio.gather(*self._tasks, return_exceptions=True)
                await self._server.wait_closed()


async def wait_until(predicate: Callable[[], bool], within: float, step: float = 0.01) -> bool:
    """Poll `predicate` until it holds or `within` seconds pass; its final value."""
    for _ in range(max(1, round(within / step))):
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port
