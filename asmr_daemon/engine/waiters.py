"""The callers' futures, by request: the scheduler plans plain requests and holds none of them.

Used under the engine's lock. Cancelling a future (``future.cancel()``) is how a caller that moved
on says so; ``detach`` then tells the engine whether anybody still waits for that request.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

from asmr_daemon.engine.requests import Request, Translation
from asmr_daemon.futures import settle as settle_one

Future = concurrent.futures.Future


class Waiters:
    def __init__(self) -> None:
        self._futures: dict[int, list[Future[Translation]]] = {}  # request_id -> its callers
        self._owner: dict[int, Request] = {}  # id(future) -> request

    def attach(self, request: Request, future: Future[Translation]) -> None:
        self._futures.setdefault(request.request_id, []).append(future)
        self._owner[id(future)] = request

    def detach(self, future: Future[Translation]) -> Request | None:
        """Forget a cancelled future; returns its request when nobody else waits for it."""
        request = self._owner.pop(id(future), None)
        if request is None:
            return None
        rest = [f for f in self._futures.get(request.request_id, []) if f is not future]
        self._futures[request.request_id] = rest
        return None if rest else request

    def start(self, requests: tuple[Request, ...] | list[Request]) -> None:
        """Mark the futures of requests about to run as running, so ``cancel()`` then returns False
        (truthfully); a future cancelled meanwhile is dropped. A continued request's futures are
        already running."""
        for request in requests:
            futures = list(self._futures.get(request.request_id, []))
            self._futures[request.request_id] = [f for f in futures
                                                 if f.running() or f.set_running_or_notify_cancel()]

    def pop(self, request: Request) -> list[Future[Translation]]:
        """The futures to resolve with the request's result; the request is forgotten."""
        futures = self._futures.pop(request.request_id, [])
        for future in futures:
            self._owner.pop(id(future), None)
        return futures

    def count(self, request: Request) -> int:
        return len(self._futures.get(request.request_id, ()))


def settle(futures: list[Future[Any]], value: Any) -> None:
    """Resolve each future unless its caller cancelled it meanwhile (possible for late duplicates)."""
    for future in futures:
        settle_one(future, value)
