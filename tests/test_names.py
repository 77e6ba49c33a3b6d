"""Small guards on names and waits: the error-code table refuses a repeated code at import,
and a blocking client call never waits on its loop thread without end."""

from __future__ import annotations

import asyncio
from enum import StrEnum

import pytest

from cc_client.sync import _LoopThread
from protocol.errors import ErrorCode, unique_codes


def test_the_error_codes_are_distinct_and_named_by_their_value() -> None:
    assert unique_codes(ErrorCode) is ErrorCode
    assert all(code.name == code.value for code in ErrorCode)


def test_a_repeated_code_is_refused_at_class_creation() -> None:
    with pytest.raises(ValueError, match="B repeats the code 'A' of A"):
        @unique_codes
        class Codes(StrEnum):
            A = "A"
            B = "A"


def test_a_code_whose_value_is_not_its_name_is_refused() -> None:
    with pytest.raises(ValueError, match="has the value 'C'"):
        @unique_codes
        class Codes(StrEnum):
            B = "C"


def test_a_blocking_call_gives_up_on_a_stuck_loop_thread() -> None:
    runner = _LoopThread(timeout=0.05)
    try:
        started: list[bool] = []
        cancelled: list[bool] = []

        async def stuck() -> None:
            started.append(True)
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        with pytest.raises(TimeoutError, match=r"within 0\.05 s"):
            runner.run(stuck())
        assert runner.run(asyncio.sleep(0, "still serving")) == "still serving"
        assert started == [True] and cancelled == [True]
    finally:
        runner.stop()
