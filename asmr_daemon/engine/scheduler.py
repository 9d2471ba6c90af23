"""Bookkeeping for waiting and running requests; plans one micro-batch at a time.

Pure: no threads, no locks, no torch, no futures. The engine calls it under its own lock. Policy:

* interactive requests are always planned before batch ones (an editor never waits behind
  a whole file, only behind the step already on the GPU);
* within the chosen priority class, the ``window`` earliest-arrived requests are sorted by
  length and cut into micro-batches (at most ``max_batch`` rows, padded cost
  ``rows * longest(prompt + max_new_tokens)`` within ``token_budget``); the plan is the
  micro-batch that holds the oldest request, so similar lengths run together (little
  padding) and the queue still advances in arrival order (no starvation);
* a micro-batch holds requests of one backend identity only: after an adapter switch, requests
  submitted before it still run on the old adapter; a retry (its own repetition penalty) shares a
  call with first passes, so it costs a row, not a call of its own;
* a few batch rows join an editor's plan (``join_divisor``): first the rows its arrival cut short
  (``requeue`` with their tokens so far; they continue in the same call), then the oldest, as
  many new rows as fit one prefill chunk with the editor's (``prefill_rows``), so the batch job
  advances while an editor sends request after request;
* an editor's request may instead join a running call of its backend (``join``): the call keeps
  at most as many batch rows as an editor's plan carries (``carried``; the worker sets the rest
  aside), and takes batch rows along with the editor's as such a plan would;
* while a batch call runs, batch rows join it as its rows end (``take``: continuous batching),
  from the head of the queue up to the first request that is not a batch row of the call's
  backend (an editor's or another adapter's request gets the next call), length-sorted like a
  plan; near the job's end (the whole queue in reach), the longest first;
* a request whose micro-batch raised runs ``alone``, so one bad row fails only itself;
* identical work is done once: ``add`` returns the request already waiting or running with the
  same key, and the engine attaches its caller to that one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from asmr_daemon.engine.requests import Priority, Request, RequestStatus


@dataclass(frozen=True)
class BatchPlan:
    requests: tuple[Request, ...]
    priority: Priority
    padded_tokens: int
    """rows * longest row (prompt + max_new_tokens): what the batch costs once padded."""

    @property
    def identity(self) -> str:
        """The backend every row runs on."""
        return self.requests[0].identity


class Scheduler:
    def __init__(self, *, window_factor: int = 4, join_divisor: int = 2, prefill_rows: int = 8) -> None:
        # How many batches' worth of the queue head are considered for length sorting.
        self.window_factor = window_factor
        # An editor's call carries at most max_batch // join_divisor batch rows along. Measured on
        # 2 CPU cores (tiny model, batch 32; rows cut short resume from their kept KV cache): a
        # 17-row step costs ~1.5x a 1-row step; 16 rows kept the job at 62-79% of its speed with
        # the editor's p95 at x1.7-1.8, 8 rows 42-56% and x1.2-1.8 (single runs; README).
        self.join_divisor = join_divisor
        # Rows with no tokens yet (a prompt to prefill) join only while the call's new rows, the
        # editor's included, fit one prefill chunk (``prefill_rows``, decoding.PREFILL_ROWS): the
        # editor then waits for one prefill. Rows cut short resume from their kept KV cache.
        self.prefill_rows = prefill_rows
        self._waiting: dict[str, Request] = {}  # in the order they were queued (or requeued)
        self._running: dict[str, Request] = {}
        self._added: list[Request] = []  # new since ``unprepared()`` was last asked

    # -- adding and removing -------------------------------------------------------------

    def add(self, request: Request) -> Request:
        """Queue ``request``, or return the identical one (same key) already in flight.

        An interactive duplicate of a waiting batch request upgrades it to interactive.
        """
        existing = self._waiting.get(request.key) or self._running.get(request.key)
        if existing is None:
            request.status = RequestStatus.WAITING
            self._waiting[request.key] = request
            self._added.append(request)
            return request
        if existing.status is RequestStatus.WAITING and request.priority < existing.priority:
            existing.priority = request.priority
        return existing

    def abort(self, request: Request) -> bool:
        """Drop a waiting request nobody waits for any more; True if it was dropped.

        Idempotent. A running request keeps running (its result still goes to the memory).
        """
        if request.status is not RequestStatus.WAITING or self._waiting.get(request.key) is not request:
            return False
        request.status = RequestStatus.CANCELLED
        del self._waiting[request.key]
        return True

    def finish(self, requests: tuple[Request, ...] | list[Request],
               status: RequestStatus = RequestStatus.FINISHED) -> None:
        """Forget running (or waiting) requests once their result is known."""
        for request in requests:
            request.status = status
            for table in (self._running, self._waiting):
                if table.get(request.key) is request:
                    del table[request.key]

    def requeue(self, requests: list[Request]) -> None:
        """Put running requests back in the queue (cut short, retried or isolated), keeping their
        arrival order, so they lead the next plan of their priority."""
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
        return drained

    # -- queries ---------------------------------------------------------------------------

    def unprepared(self) -> list[Request]:
        """Requests queued since the last call that still wait to be tokenized."""
        added, self._added = self._added, []
        return [r for r in added if r.status is RequestStatus.WAITING and not r.is_prepared]

    def waiting(self) -> Iterator[Request]:
        return iter(list(self._waiting.values()))

    def has_waiting(self, priority: Priority) -> bool:
        return any(r.priority == priority for r in self._waiting.values())

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
        leave its caller waiting forever.
        """
        ready = [r for r in self._waiting.values() if r.is_prepared]
        if not ready:
            return None
        priority = min(r.priority for r in ready)
        oldest = min(r for r in ready if r.priority == priority)
        if oldest.alone:
            chosen = [oldest]
        else:
            # One backend per call; isolated rows never share one.
            ready = [r for r in ready if r.identity == oldest.identity and not r.alone]
            queue = sorted(r for r in ready if r.priority == priority)
            window = queue[: max(1, max_batch) * max(1, self.window_factor)]
            window.sort(key=lambda r: (r.num_tokens, r.arrival, r.request_id))
            chosen = next(chunk for chunk in _chunks(window, max_batch, token_budget) if oldest in chunk)
            room = min(max_batch, len(chosen) + self.carried(max_batch))
            fresh = self.prefill_rows - sum(1 for r in chosen if not r.generated)
            chosen += _joiners(chosen, [r for r in ready if r.priority > priority], room, token_budget, fresh)
        self._start(chosen)
        longest = max(r.num_tokens for r in chosen)
        return BatchPlan(tuple(chosen), priority, longest * len(chosen))

    def take(self, identity: str, count: int, token_budget: int, running: list[Request],
             max_batch: int = 0) -> list[Request]:
        """Up to ``count`` batch rows of backend ``identity`` to join a running batch call that
        holds ``running``, within ``token_budget`` with them; marked RUNNING. From the head of the
        queue up to the first request that is not such a row (an editor's, another backend's, one
        to run alone: those get the next call), ``window_factor`` x ``count`` rows at most, the
        length-sorted run of them that holds the oldest (one prefill, little padding). Walks only
        the head of the queue: this runs every few steps.

        When that head is the whole queue, within ``window_factor`` x ``max_batch`` rows (the
        job's end is in reach, so no order can starve a row), the longest rows join first: the
        rows that join last are the short ones, and the call does not end with a few long rows
        alone (tiny model, 320 lines, batch 32: 132 -> 119 steps; the mid-size random GLM, whose
        rows run to their limits, 64 lines: 100 steps either way)."""
        if count < 1:
            return []
        window, reach = count * max(1, self.window_factor), max(count, max_batch) * max(1, self.window_factor)
        head: list[Request] = []
        whole = True
        for row in self._waiting.values():
            if not row.is_prepared:
                whole = False  # its length is not known yet
                continue
            if row.priority is not Priority.BATCH or row.identity != identity or row.alone:
                whole = False
                break
            head.append(row)
            if len(head) > reach:
                whole = False
                break
        if whole:
            head.sort(key=lambda r: (-r.num_tokens, r.arrival, r.request_id))
            candidates = head[:count]
        else:
            head = head[:window]
            if not head:
                return []
            oldest = min(head)
            head.sort(key=lambda r: (r.num_tokens, r.arrival, r.request_id))
            at = head.index(oldest)
            start = max(0, min(at - count // 2, len(head) - count))
            candidates = head[start : start + count]
        taken: list[Request] = []
        longest = max((r.num_tokens for r in running), default=0)
        for row in candidates:
            if (len(running) + len(taken) + 1) * max(longest, row.num_tokens) > token_budget:
                break
            taken.append(row)
            longest = max(longest, row.num_tokens)
        self._start(taken)
        return taken

    def carried(self, max_batch: int) -> int:
        """How many batch rows a call carries along while it runs editors' requests."""
        return max(1, max_batch // max(1, self.join_divisor))

    def has_joinable_editor(self, identity: str) -> bool:
        """Whether an editor's request waits that could join a running call of backend ``identity``."""
        return any(r.priority is Priority.INTERACTIVE and r.identity == identity and not r.alone
                   for r in self._waiting.values())

    def join(self, identity: str, running: list[Request], max_batch: int, token_budget: int) -> list[Request]:
        """The waiting editors' requests of backend ``identity`` (tokenized, not to run alone) that
        join a running call holding ``running``, and batch rows along with them up to what an
        editor's plan carries (``carried``, ``running``'s batch rows included; rows cut short first,
        new ones within one prefill chunk with the editors'); marked RUNNING. None if no editor's
        request can join."""
        ready = [r for r in self._waiting.values() if r.is_prepared and r.identity == identity and not r.alone]
        editors = sorted(r for r in ready if r.priority is Priority.INTERACTIVE)
        editors = editors[: max(0, max_batch - sum(1 for r in running if r.priority is Priority.INTERACTIVE))]
        if not editors:
            return []
        chosen = running + editors
        room = len(chosen) - sum(1 for r in chosen if r.priority is Priority.BATCH) + self.carried(max_batch)
        joined = editors + _joiners(chosen, [r for r in ready if r.priority is Priority.BATCH], room, token_budget,
                                    self.prefill_rows - len(editors))
        self._start(joined)
        return joined

    def _start(self, requests: list[Request]) -> None:
        for request in requests:
            request.status = RequestStatus.RUNNING
            del self._waiting[request.key]
            self._running[request.key] = request


def _joiners(chosen: list[Request], lower: list[Request], max_batch: int, token_budget: int,
             max_fresh: int) -> list[Request]:
    """Batch rows that go on in an editor's call, up to the call's limits: first those it cut short
    (they continue after their tokens so far), then the oldest, at most ``max_fresh`` of those.
    Left alone, a batch job would not advance while an editor sends request after request."""
    joined: list[Request] = []
    longest, fresh = max(r.num_tokens for r in chosen), 0
    for row in sorted(lower, key=lambda r: (not r.generated, r.arrival, r.request_id)):
        rows = len(chosen) + len(joined) + 1
        if rows > max_batch or rows * max(longest, row.num_tokens) > token_budget:
            break
        if not row.generated:
            if fresh >= max_fresh:
                break
            fresh += 1
        joined.append(row)
        longest = max(longest, row.num_tokens)
    return joined


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
