"""The status keeps saying why a service fails until a new session has shown it works."""

from __future__ import annotations

import asyncio

from agent.status import Status


async def test_a_session_dropped_at_once_leaves_the_error_showing() -> None:
    status = Status(mode="omni")
    status.error("realtime session lost: the server closed the session (1000)")
    proven = asyncio.create_task(status.clear_error_when_proven(0.2))
    await asyncio.sleep(0.05)
    proven.cancel()  # the session died before it proved itself
    await asyncio.sleep(0.3)
    assert status.last_error == "realtime session lost: the server closed the session (1000)"


async def test_a_session_that_lives_clears_the_error_it_replaced() -> None:
    status = Status(mode="omni")
    status.error("realtime session lost: connection refused")
    await status.clear_error_when_proven(0.05)
    assert status.last_error is None


async def test_a_newer_problem_is_not_cleared_by_the_older_sessions_proof() -> None:
    status = Status(mode="pipeline")
    status.error("speech recognition session lost: refused")
    proven = asyncio.create_task(status.clear_error_when_proven(0.1))
    await asyncio.sleep(0.02)
    status.error("LLM throttled, this turn is dropped")
    await proven
    assert status.last_error == "LLM throttled, this turn is dropped"
