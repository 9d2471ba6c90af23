"""One way to chain ``concurrent.futures.Future``s: a result future that follows its sources.

Used where one caller's future stands for several engine requests (a line made of segments, an
editor's view of a line): cancelling the result cancels the sources, and the result fails or is
cancelled as soon as one source does.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


def settle(future: Future[Any], value: Any) -> None:
    """Resolve ``future`` with ``value`` (an exception sets it as the error), unless it is
    already done -- e.g. cancelled by its caller meanwhile."""
    if future.done():
        return
    try:
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            future.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass


def chained(sources: Sequence[Future[Any]], combine: Callable[[], T]) -> Future[T]:
    """A future for ``combine()`` once every source is done. The first source to fail (or be
    cancelled) fails (cancels) the result; cancelling the result cancels every source."""
    result: Future[T] = Future()
    lock = threading.Lock()
    left = [len(sources)]

    def source_done(source: Future[Any]) -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if result.done():
            return
        if source.cancelled():
            result.cancel()
        elif (error := source.exception()) is not None:
            settle(result, error)
        elif last:
            try:
                settle(result, combine())
            except Exception as exc:  # noqa: BLE001 - it belongs to the caller, as the future's error
                settle(result, exc)

    def result_done(future: Future[T]) -> None:
        if future.cancelled():
            for source in sources:
                source.cancel()

    result.add_done_callback(result_done)
    if not sources:
        settle(result, combine())
    for source in sources:
        source.add_done_callback(source_done)
    return result
