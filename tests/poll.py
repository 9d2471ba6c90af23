"""Waiting for something another thread or process does: one helper, sync and async.

Use these instead of ``while ...: time.sleep(...)`` loops; the failure message says what never
happened (pass ``what`` a callable to build it lazily, e.g. with the daemon's log at that moment).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
INTERVAL = 0.05


def _message(what: str | Callable[[], str], timeout: float) -> str:
    return f"timed out after {timeout:.0f} s waiting for {what() if callable(what) else what}"


def poll_until(condition: Callable[[], T], timeout: float = 60.0, what: str | Callable[[], str] = "the condition",
               interval: float = INTERVAL) -> T:
    """Call ``condition`` until it returns something truthy (returned); AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if value := condition():
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_message(what, timeout))
        time.sleep(interval)


async def apoll_until(condition: Callable[[], T], timeout: float = 60.0, what: str | Callable[[], str] = "the condition",
                      interval: float = INTERVAL) -> T:
    """``poll_until`` for coroutines: sleeps with ``asyncio.sleep``, so the event loop keeps running."""
    deadline = time.monotonic() + timeout
    while True:
        if value := condition():
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_message(what, timeout))
        await asyncio.sleep(interval)
