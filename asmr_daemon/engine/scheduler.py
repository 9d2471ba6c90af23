"""Bookkeeping for waiting and running requests; plans one micro-batch at a time.

Pure: no threads, no locks, no torch. The engine calls it under its own lock. Policy:

* interactive requests are always planned before batch ones (an editor never waits behind
  a whole file, only behind the batch already on the GPU);
* within the chosen priority class, the ``window`` earliest-arrived requests are sorted by
  length and cut into micro-batches (at most ``max_batch`` rows, padded cost
  ``rows * longest(prompt + max_new_tokens)`` within ``token_budget``); the plan is the
  micro-batch that holds the oldest request, so similar lengths run together (little
  padding) and the queue still advances in arrival order (no starvation);
* a micro-batch holds requests of one backend identity only (after an adapter switch, requests
  submitted before it still run on the old adapter);
* a batch-priority micro-batch may be preempted when an editor request arrives (``requeue``):
  its unfinished rows go back to the queue with their arrival order and the tokens generated so
  far, and continue in a later plan;
* identical work is done once: a request whose key is already waiting or running gets the
  new future attached to the existing request instead of being queued again.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from dataclasses import dataclass

from asmr_daemon.engine.requests import Priority, Request, RequestStatus

Future = concurrent.futures.Future


@dataclass(frozen=True)
class BatchPlan:
    requests: tuple[Request, ...]
    priority: Priority
    padded_tokens: int
    """rows * longest row (prompt + max_new_tokens): what the batch costs once padded."""


class Scheduler:
    def __init__(self, *, window_factor: int = 4) -> None:
        # How many batches' worth of the queue head are considered for length sorting.
        self.window_factor = window_factor
        self._waiting: dict[str, Request] = {}
        self._running: dict[str, Request] = {}
        self._owner: dict[int, Request] = {}  # id(future) -> request, for cancel()

    # -- adding and removing -------------------------------------------------------------

    def add(self, request: Request) -> Request:
        """Queue ``request``, or attach its futures to an identical one already in flight.

        Returns the request that will serve the futures. An interactive duplicate of a
        waiting batch request upgrades it to interactive.
        """
        existing = self._waiting.get(request.key) or self._running.get(request.key)
        if existing is None:
            request.status = RequestStatus.WAITING
            self._waiting[request.key] = request
            existing = request
        else:
            existing.futures.extend(request.futures)
            if existing.status is RequestStatus.WAITING and request.priority < existing.priority:
                existing.priority = request.priority
        for future in request.futures:
            self._owner[id(future)] = existing
        return existing

    def cancel(self, future: Future) -> Request | None:
        """Detach ``future`` from its request; drop a waiting request nobody waits for.

        Idempotent; unknown futures are ignored. Returns the request that was dropped, if any.
        A running request keeps running (its result still goes to the translation memory).
        """
        request = self._owner.pop(id(future), None)
        if request is None:
            return None
        request.futures = [f for f in request.futures if f is not future]
        if request.futures or request.status is not RequestStatus.WAITING:
            return None
        request.status = RequestStatus.CANCELLED
        del self._waiting[request.key]
        return request

    def finish(self, requests: tuple[Request, ...] | list[Request],
               status: RequestStatus = RequestStatus.FINISHED) -> None:
        """Forget running requests once their futures are resolved."""
        for request in requests:
            request.status = status
            if self._running.get(request.key) is request:
                del self._running[request.key]
            for future in request.futures:
                self._owner.pop(id(future), None)

    def requeue(self, requests: list[Request]) -> None:
        """Put running requests back in the queue (their batch was preempted), keeping their
        arrival order, so they lead the next batch plan of their priority."""
        for request in requests:
            if self._running.get(request.key) is request:
                del self._running[request.key]
            request.status = RequestStatus.WAITING
            self._waiting[request.key] = request

    def drain(self) -> list[Request]:
        """Remove and return every waiting request (shutdown)."""
        drained = list(self._waiting.values())
        self._waiting.clear()
        for request in drained:
            request.status = RequestStatus.CANCELLED
            for future in request.futures:
                self._owner.pop(id(future), None)
        return drained

    # -- queries ---------------------------------------------------------------------------

    def waiting(self) -> Iterator[Request]:
        return iter(list(self._waiting.values()))

    def has_waiting(self, priority: Priority) -> bool:
        return any(r.priority == priority for r in self._waiting.values())

    def has_ready(self) -> bool:
        return any(r.is_prepared for r in self._waiting.values())

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def num_running(self) -> int:
        return len(self._running)

    # -- planning --------------------------------------------------------------------------

    def plan(self, max_batch: int, token_budget: int) -> BatchPlan | None:
        """Choose the next micro-batch and mark it RUNNING; None when nothing is ready.

        A single request larger than ``token_budget`` still runs, alone: refusing it would
        leave its future waiting forever.
        """
        ready = [r for r in self._waiting.values() if r.is_prepared]
        if not ready:
            return None
        priority = min(r.priority for r in ready)
        queue = sorted(r for r in ready if r.priority == priority)
        oldest = queue[0]
        # A batch runs on one backend: only requests bound to the oldest one's adapter.
        queue = [r for r in queue if r.identity == oldest.identity]
        window = queue[: max(1, max_batch) * max(1, self.window_factor)]
        window.sort(key=lambda r: (r.num_tokens, r.arrival, r.request_id))
        chosen = next(chunk for chunk in _chunks(window, max_batch, token_budget) if oldest in chunk)
        for request in chosen:
            request.status = RequestStatus.RUNNING
            del self._waiting[request.key]
            self._running[request.key] = request
        longest = max(r.num_tokens for r in chosen)
        return BatchPlan(tuple(chosen), priority, longest * len(chosen))


def _chunks(rows: list[Request], max_batch: int, token_budget: int) -> Iterator[list[Request]]:
    """Cut length-sorted rows into consecutive micro-batches within both limits."""
    chunk: list[Request] = []
    for row in rows:
        # Rows are sorted by length, so the newcomer is the longest: padded cost is rows * it.
        if chunk and (len(chunk) >= max_batch or (len(chunk) + 1) * row.num_tokens > token_budget):
            yield chunk
            chunk = []
        chunk.append(row)
    if chunk:
        yield chunk
