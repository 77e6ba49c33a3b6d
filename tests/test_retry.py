"""The client's one retry policy (cc_client/retry.py) and the table that drives it.

The policy's own tests run on a fake clock whose `sleep` only moves the clock; the
client tests at the end use fake servers on loopback, with pauses of milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest

import cc_client
from cc_client import CommunicationFailure
from cc_client.retry import ExponentialBackoff, Retry, Retryable, RetryTimeout
from protocol import codec
from protocol import messages as m
from protocol.errors import RETRYABLE, ErrorCode, RetryWhere
from tests.netfakes import FakeServer, FrameStream, Handler, serve_handshake

pytestmark = pytest.mark.timeout(20)
T = m.MsgType


class FakeClock:
    """A clock that only `sleep` moves; every pause is recorded."""

    def __init__(self) -> None:
        self.now = 100.0
        self.pauses: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def policy(clock: FakeClock, rand: Callable[[], float] = lambda: 0.0) -> Retry:
    return Retry(clock.time, ExponentialBackoff(first=0.01, cap=0.08, rand=rand),
                 sleep=clock.sleep)


def failing(times: int, where: RetryWhere = RetryWhere.SAME_CONNECTION,
            result: str = "done") -> tuple[list[int], Callable[[], Awaitable[str]]]:
    """An attempt that raises Retryable `times` times, then returns `result`."""
    calls: list[int] = []

    async def attempt() -> str:
        calls.append(len(calls) + 1)
        if len(calls) <= times:
            raise Retryable(where, f"failure {len(calls)}")
        return result

    return calls, attempt


# ----------------------------------------------------------------------- the table

def test_the_table_says_which_codes_are_retried_and_where() -> None:
    assert RETRYABLE[ErrorCode.TOO_MANY_REQUESTS] is RetryWhere.SAME_CONNECTION
    assert RETRYABLE[ErrorCode.SHUTTING_DOWN] is RetryWhere.NEW_CONNECTION
    assert RETRYABLE[ErrorCode.TOO_MANY_CONNECTIONS] is RetryWhere.NEW_CONNECTION
    retry = Retry(time.monotonic)
    assert retry.where("TOO_MANY_REQUESTS") is RetryWhere.SAME_CONNECTION   # plain strings
    for code in ErrorCode:
        assert retry.where(code) is RETRYABLE.get(code)
    # business outcomes, refusals and a reused operation id are final: never sent again
    for final in ("SESSION_NOT_FOUND", "CREDIT_LIMIT_REACHED", "INVALID_REQUEST",
                  "AUTHENTICATION_FAILED", "SERVER_ERROR", "OPERATION_ID_REUSED", None):
        assert retry.where(final) is None and retry.classify(final, "x") is None
    with pytest.raises(TypeError):
        RETRYABLE[ErrorCode.SERVER_ERROR] = RetryWhere.SAME_CONNECTION  # type: ignore[index]


# ----------------------------------------------------------------------- back-off

def test_backoff_doubles_up_to_its_cap_and_jitter_only_shortens() -> None:
    exact = ExponentialBackoff(first=0.01, cap=0.08, rand=lambda: 0.0)
    assert [exact.compute(n) for n in range(7)] == [0.0, 0.01, 0.02, 0.04, 0.08, 0.08, 0.08]
    assert exact.compute(10_000) == 0.08                     # no overflow for long outages
    shortest = ExponentialBackoff(first=0.01, cap=0.08, jitter=0.5, rand=lambda: 1.0)
    assert [shortest.compute(n) for n in (1, 4)] == [0.005, 0.04]
    default = ExponentialBackoff()
    assert all(0.5 <= default.compute(3) / 0.04 <= 1.0 for _ in range(200))


# ----------------------------------------------------------------------- Retry.call

async def test_retries_until_an_attempt_succeeds_pausing_per_the_backoff() -> None:
    clock = FakeClock()
    retry = policy(clock)
    calls, attempt = failing(3)
    assert await retry.call(attempt, deadline=clock.now + 5) == "done"
    assert calls == [1, 2, 3, 4] and clock.pauses == [0.01, 0.02, 0.04]
    assert retry.retries == 3


async def test_no_retry_past_the_deadline_and_the_last_reason_is_kept() -> None:
    clock = FakeClock()
    retry = policy(clock)
    calls, attempt = failing(100)
    with pytest.raises(RetryTimeout) as info:
        await retry.call(attempt, deadline=clock.now + 0.1)
    # pauses 0.01 + 0.02 + 0.04 = 0.07; the next (0.08) would end past the deadline
    assert clock.pauses == [0.01, 0.02, 0.04] and clock.now <= 100.1
    assert len(calls) == 4 and info.value.reason == "failure 4"
    assert isinstance(info.value, TimeoutError)


async def test_a_final_failure_is_not_retried() -> None:
    clock = FakeClock()
    retry = policy(clock)
    calls: list[int] = []

    async def attempt() -> str:
        calls.append(1)
        raise CommunicationFailure("the client was closed")

    with pytest.raises(CommunicationFailure):
        await retry.call(attempt, deadline=clock.now + 5)
    assert calls == [1] and clock.pauses == []


async def test_an_attempt_that_already_failed_counts_as_the_first_failure() -> None:
    clock = FakeClock()
    retry = policy(clock)
    calls, attempt = failing(1, RetryWhere.NEW_CONNECTION)
    first = Retryable(RetryWhere.NEW_CONNECTION, "lost on the fast path")
    assert await retry.call(attempt, deadline=clock.now + 5, failed=first) == "done"
    assert calls == [1, 2] and clock.pauses == [0.01, 0.02]


async def test_pause_outside_a_call_never_fails_without_a_deadline() -> None:
    clock = FakeClock()
    retry = policy(clock)
    for failures in range(1, 40):
        await retry.pause(failures)
    assert max(clock.pauses) == 0.08 and len(clock.pauses) == 39


# ----------------------------------------------------------------------- the client

def refusal(code: str) -> m.Error:
    return m.Error(code, f"refused: {code}")


def refusing_every_ping(code: str) -> Handler:
    """A fake server that answers every PING with an ERROR of `code`."""
    async def handler(stream: FrameStream) -> None:
        await serve_handshake(stream)
        while (frame := await stream.read_frame(5.0)) is not None:
            if frame.type == T.PING:
                stream.send(refusal(code), frame.request_id)

    return handler


async def test_client_sends_too_many_requests_again_on_the_same_connection() -> None:
    bodies: list[bytes] = []

    async def busy_twice(stream: FrameStream) -> None:
        await serve_handshake(stream)
        while (frame := await stream.read_frame(5.0)) is not None:
            if frame.type != T.PING:
                continue
            bodies.append(frame.body)
            if len(bodies) <= 2:
                stream.send(refusal("TOO_MANY_REQUESTS"), frame.request_id)
            else:
                stream.send(m.Pong(), frame.request_id)

    async with FakeServer(busy_twice) as fake, \
            cc_client.connect(fake.url, request_timeout=2.0) as client:
        await client.ping()
        assert len(bodies) == 3 and len(fake.streams) == 1 and client.reconnects == 0
        assert client.retry.retries == 2


async def test_client_sends_shutting_down_again_on_a_new_connection() -> None:
    async def shuts_down_first(stream: FrameStream) -> None:
        await serve_handshake(stream)
        first = len(fake.streams) == 1
        while (frame := await stream.read_frame(5.0)) is not None:
            if frame.type == T.PING:
                stream.send(refusal("SHUTTING_DOWN") if first else m.Pong(),
                            frame.request_id)

    async with FakeServer(shuts_down_first) as fake, \
            cc_client.connect(fake.url, request_timeout=2.0) as client:
        await client.ping()
        assert len(fake.streams) == 2 and client.reconnects == 1


async def test_request_timeout_bounds_retries_and_names_the_last_refusal() -> None:
    # 0.5 s: the first refusal must arrive within it (0.15 s flaked on a busy machine)
    async with FakeServer(refusing_every_ping("TOO_MANY_REQUESTS")) as fake, \
            cc_client.connect(fake.url, request_timeout=0.5) as client:
        began = time.monotonic()
        with pytest.raises(CommunicationFailure, match="TOO_MANY_REQUESTS") as info:
            await client.ping()
        assert time.monotonic() - began < 1.0
        assert "no reply within 0.5 s" in info.value.message
        assert client.retry.retries >= 3


async def test_a_timeout_during_a_retry_in_flight_still_names_the_last_refusal() -> None:
    async def refuses_then_stays_silent(stream: FrameStream) -> None:
        await serve_handshake(stream)
        first = True
        while (frame := await stream.read_frame(5.0)) is not None:
            if frame.type == T.PING and first:      # refused once; the retry never answered
                stream.send(refusal("TOO_MANY_REQUESTS"), frame.request_id)
                first = False

    async with FakeServer(refuses_then_stays_silent) as fake, \
            cc_client.connect(fake.url, request_timeout=0.5) as client:
        with pytest.raises(CommunicationFailure, match="TOO_MANY_REQUESTS") as info:
            await client.ping()
        assert "no reply within 0.5 s" in info.value.message
        assert client.retry.retries == 1


async def test_a_final_error_reply_is_returned_not_retried() -> None:
    async with FakeServer(refusing_every_ping("INVALID_REQUEST")) as fake, \
            cc_client.connect(fake.url, request_timeout=2.0) as client:
        msg_type, body = await client.call(T.PING, codec.pack({}))
        assert msg_type == T.ERROR and codec.unpack(body)["code"] == "INVALID_REQUEST"
        assert client.retry.retries == 0
