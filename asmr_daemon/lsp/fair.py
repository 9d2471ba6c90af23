"""Fair shares of the one engine between editor connections.

Every editor request runs at interactive priority, and the engine serves one priority in
submission order: a client that asks for 10,000 lines (a code-action flood, a huge range)
would put another editor's hover behind all of them. Each connection therefore sees the engine
through a ``FairEngine`` that lets at most ``window`` of its requests into the engine at a time
and keeps the rest in its own queue; another client's hover then waits for at most about
``window`` requests per busy connection -- one batch of the model each.

One ``submit_many`` call stays one submission (the engine keys it with the adapter of that
moment: a document submitted before ``useAdapter`` comes back entirely in the old adapter's
translation), so a call is let in whole once the window has room; only the next call waits.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from typing import Any


class FairEngine:
    """An engine proxy: ``submit``/``submit_many`` return at once; cancelling a future cancels
    the request (before it reaches the engine, it never does)."""

    def __init__(self, engine: Any, window: int) -> None:
        self._engine = engine
        self._window = max(1, window)
        self._lock = threading.Lock()
        self._active = 0
        self._pumping = False
        self._waiting: deque[tuple[list[tuple[Future, Any]], Any]] = deque()  # ([(future, segment)], priority)

    def __getattr__(self, name: str) -> Any:  # lookup, record_correction, use_adapter, ...
        return getattr(self._engine, name)

    def submit(self, source: str, *, context: Sequence[Any] = (), glossary: Sequence[Any] = (),
               priority: Any = None) -> Future:
        from asmr_daemon.engine.engine import Segment
        from asmr_daemon.engine.requests import Priority

        segment = Segment(source, tuple(context), tuple(glossary))
        return self.submit_many([segment], priority=Priority.BATCH if priority is None else priority)[0]

    def submit_many(self, segments: Sequence[Any], *, priority: Any = None) -> list[Future]:
        from asmr_daemon.engine.requests import Priority

        priority = Priority.BATCH if priority is None else priority
        futures: list[Future] = [Future() for _ in segments]
        with self._lock:
            self._waiting.append((list(zip(futures, segments, strict=True)), priority))
        self._pump()
        return futures

    @property
    def queued(self) -> int:
        """Requests held back in this connection's own queue (not yet in the engine)."""
        with self._lock:
            return sum(1 for group, _ in self._waiting for future, _ in group if not future.done())

    def _pump(self) -> None:
        """Forward waiting calls while the window has room. One thread pumps at a time, in a
        loop: requests the engine answers at once (from memory) do not recurse."""
        with self._lock:
            if self._pumping:
                return
            self._pumping = True
        while True:
            with self._lock:
                group: list[tuple[Future, Any]] = []
                priority = None
                while self._waiting and not group and self._active < self._window:
                    items, priority = self._waiting.popleft()
                    group = [(f, seg) for f, seg in items if not f.done()]  # cancelled ones never reach the engine
                self._active += len(group)
                if not group:
                    self._pumping = False
                    return
            self._forward(group, priority)

    def _forward(self, group: list[tuple[Future, Any]], priority: Any) -> None:
        try:
            inners = self._engine.submit_many([segment for _, segment in group], priority=priority)
        except BaseException as exc:
            for outer, _ in group:
                _settle(outer, exc=exc)
                self._done()
            return
        for (outer, _), inner in zip(group, inners, strict=True):
            outer.add_done_callback(functools.partial(_cancel_with, inner))
            inner.add_done_callback(functools.partial(self._finished, outer))

    def _finished(self, outer: Future, inner: Future) -> None:
        if inner.cancelled():
            outer.cancel()
        elif (exc := inner.exception()) is not None:
            _settle(outer, exc=exc)
        else:
            _settle(outer, result=inner.result())
        self._done()

    def _done(self) -> None:
        with self._lock:
            self._active -= 1
        self._pump()


def _cancel_with(inner: Future, outer: Future) -> None:
    if outer.cancelled():
        inner.cancel()


def _settle(future: Future, *, result: Any = None, exc: BaseException | None = None) -> None:
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass  # cancelled by the caller meanwhile
