"""The engine's worker thread: the only thread on the backends (tokenizer included, since fast
tokenizers are not safe to share between threads). Its step: plan a micro-batch, run it, apply.

While a batch call runs on a preemptible backend, waiting batch rows join it as its rows end
(continuous batching): a step costs nearly as much for a few rows as for a full batch, so a call
that only drained would run its last steps near-empty.

Applying a row: an output that fails the checks is re-queued once as a retry (with the repetition
penalty; it may join the running call); a row cut short is re-queued with its tokens so far and
continues from its kept KV cache in a later call (an editor's or the next batch call); otherwise
the row is stored in the memory and its callers are answered. A preemptible backend
reports each row the step it ends, so it is settled then unless an editor waits (an editor's row
does not wait for the batch rows it shares the call with). When a call raises, its rows run again
alone, so only the bad row fails."""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any

from asmr_daemon.config import DecodingSettings
from asmr_daemon.engine import threads
from asmr_daemon.engine.backends import retire
from asmr_daemon.engine.checks import check_all
from asmr_daemon.engine.requests import (
    Backend,
    Priority,
    Request,
    RequestStatus,
    Translation,
    Unfinished,
)
from asmr_daemon.engine.scheduler import BatchPlan
from asmr_daemon.engine.state import EngineState
from asmr_daemon.engine.waiters import settle
from asmr_daemon.errors import BackendUnavailable

log = logging.getLogger(__name__)

# No editor request for this long: a preemptible backend prefills chunks as large as its measured
# cost fits in PREFILL_BUDGET_S (an editor that comes back waits for one such chunk, once), and
# batch rows join running batch calls. While editors are about, calls are cut every few steps, and
# rows joined meanwhile only crowd the kept KV caches (tiny model, 30 editor requests: the job kept
# 0.59 of its speed without joining, 0.52 with, the editor's p95 the same; in-process, medians of 4).
# Larger chunks cost less per row where a forward is mostly overhead (tiny model, 320 rows: chunks
# of 8 rows 235 ms, of 32 rows 189 ms; the engine with this budget x1.06, in one process,
# alternating with 8-row chunks, medians of 8).
EDITOR_QUIET_S = 10.0
PREFILL_BUDGET_S = 0.05
# Waiting batch rows join a running batch call once batch_size // JOIN_DIVISOR of its rows ended
# (one prefill forward for them; a step costs nearly as much for 24 rows as for 32). A call takes
# at most CALL_BATCHES x batch_size rows in all, so what it keeps per row stays small.
JOIN_DIVISOR = 4
CALL_BATCHES = 16
# Rows join only while more than JOIN_WAITING x batch_size wait. Measured on the random mid-size
# GLM, whose rows all run to their limits, 64 lines: joining as soon as rows ended took 138 steps
# of ~20 rows where two sorted plans took 112 of ~25 (x0.91 lines/s).
JOIN_WAITING = 2

Outcome = list[str | Unfinished | None] | Exception
"""Per row: the decoded output, the tokens so far of a row cut short, or None for a row already
settled the step it ended (``_row_done``); or what the call raised."""


class Worker:
    def __init__(self, state: EngineState, decoding: DecodingSettings) -> None:
        self.state = state
        self.decoding = decoding
        self.cpu: threads.CpuShare | None = None  # the model's CPU threads, on a backend on torch

    def run(self) -> None:
        """Plan, run, apply, until the engine closes."""
        if "torch" in sys.modules:  # a backend on torch (the remote one needs none)
            setting = self.state.settings.cpu_threads
            self.cpu = threads.CpuShare(setting)
            count = self.cpu.start()
            log.info("the model runs on %d CPU thread(s) ([engine] cpu_threads = %d%s)", count, setting,
                     f": every core of {self.cpu.cores} that other processes leave idle" if self.cpu.adaptive else "")
        while (step := self._next_plan()) is not None:
            plan, backend = step
            self._apply(backend, *self._run(plan, backend))

    def _between_steps(self) -> bool:
        """Polled by a preemptible backend after each step: follow the other processes' load with
        the CPU threads (``CpuShare.tick``); whether an editor waits (then the call stops)."""
        if self.cpu is not None:
            self.cpu.tick()
        return self.state.interactive_waiting.is_set()

    # -- plan ------------------------------------------------------------------------------

    def _next_plan(self) -> tuple[BatchPlan, Backend] | None:
        """Wait for work; retire unused backends and tokenize new requests on the way."""
        s = self.state
        while True:
            with s.cond:
                while not s.closing and not s.scheduler.num_waiting and not self._unneeded():
                    s.cond.wait()
                if s.closing:
                    return None
                retired = [s.backends.pop(identity) for identity in self._unneeded()]
            for old in retired:
                retire(old)
            if self.cpu is not None:
                self.cpu.tick()
            self._prepare_waiting()
            with s.cond:
                if s.closing:
                    return None
                plan = s.scheduler.plan(max(1, s.settings.batch_size), s.settings.token_budget)
                if plan is None:
                    continue
                s.counts["batches"] += 1
                s.counts["joined"] += sum(1 for r in plan.requests if r.priority > plan.priority)
                if not s.scheduler.has_waiting(Priority.INTERACTIVE):
                    s.interactive_waiting.clear()
                s.waiters.start(plan.requests)
                return plan, s.backends.get(plan.identity)

    def _unneeded(self) -> list[str]:
        """Old backends no waiting request needs (under the lock; nothing runs between steps)."""
        return self.state.backends.unneeded(r.identity for r in self.state.scheduler.waiting())

    def _prepare_waiting(self) -> None:
        with self.state.cond:
            unprepared = [(self.state.backends.get(r.identity), r) for r in self.state.scheduler.unprepared()]
        for backend, request in unprepared:
            self._prepare(backend, request)

    def _prepare(self, backend: Backend, request: Request) -> None:
        """Tokenize a new request and set its generation cap; a request that cannot be tokenized
        fails alone."""
        try:
            source_tokens = len(backend.encode(request.source))
            ids = backend.encode(request.prompt)
        except Exception as exc:
            log.exception("cannot tokenize %r", request.source[:80])
            self._fail([request], exc)
            return
        request.max_new_tokens = max(self.decoding.min_new_tokens,
                                     math.ceil(self.decoding.max_new_tokens_ratio * source_tokens))
        request.prompt_ids = ids

    # -- run -------------------------------------------------------------------------------

    def _run(self, plan: BatchPlan, backend: Backend) -> tuple[list[Request], Outcome]:
        """One call on the model: the rows it ran (the plan's, then those that joined) and their
        outcome. A row continues after the tokens an earlier, stopped call generated for it; a
        retry starts over from the prompt (its ``generated`` is empty)."""
        rows = list(plan.requests)
        with self.state.cond:
            self.state.counts["model_calls"] += 1
            self.state.counts["rows"] += len(rows)
        extra: dict[str, Any] = {}
        if getattr(backend, "preemptible", False):
            generating = [len(rows), sum(1 for r in rows if r.priority is Priority.INTERACTIVE)]

            def row_done(index: int, ids: list[int]) -> None:
                generating[0] -= 1
                generating[1] -= rows[index].priority is Priority.INTERACTIVE
                self._row_done(backend, rows[index], ids, editors_generating=generating[1])

            def more() -> list[tuple[list[int], int, float | None]]:
                joined = self._more(plan, rows, generating[0])
                generating[0] += len(joined)
                rows.extend(joined)
                return [(_history(r), r.max_new_tokens - len(r.generated), self._penalty(r)) for r in joined]

            extra = {"should_stop": self._between_steps, "on_row_done": row_done}
            if time.monotonic() - self.state.last_editor_request > EDITOR_QUIET_S:  # no editor about
                extra["prefill_budget_s"] = PREFILL_BUDGET_S  # larger prefill chunks
                if plan.priority is Priority.BATCH:
                    extra["more"] = more
        try:
            ids = backend.generate([_history(r) for r in rows],
                                   max_new_tokens=[r.max_new_tokens - len(r.generated) for r in rows],
                                   repetition_penalty=self._penalties(rows),
                                   **extra)
            if len(ids) != len(rows):
                raise RuntimeError(f"backend returned {len(ids)} outputs for {len(rows)} prompts")
            return rows, [row if isinstance(row, Unfinished) else None if r.status is not RequestStatus.RUNNING
                          else _text(backend, r, row) for r, row in zip(rows, ids)]
        except Exception as exc:  # a bug or a backend failure: this call's rows only
            if isinstance(exc, BackendUnavailable):  # an outage, not a bug: no traceback
                log.warning("a batch waits for the generation server: %s", exc.message)
            else:
                log.exception("translating a batch failed: %s", _describe(plan))
            return rows, exc

    def _more(self, plan: BatchPlan, rows: list[Request], generating: int) -> list[Request]:
        """Batch rows that join a running batch call (continuous batching; no editor about), once
        a ``JOIN_DIVISOR``-th of the batch is free; none while an editor waits or the engine closes."""
        s = self.state
        size = max(1, s.settings.batch_size)
        if (size - generating < max(1, size // JOIN_DIVISOR) or len(rows) >= CALL_BATCHES * size
                or s.interactive_waiting.is_set()):
            return []
        self._prepare_waiting()  # requests submitted since the call began
        with s.cond:
            # Near a job's end, rows joining late would end late, one after another: the last
            # batches run as plans of their own instead (length-sorted, they end together).
            if s.closing or s.scheduler.num_waiting <= JOIN_WAITING * size:
                return []
            running = [r for r in rows if r.status is RequestStatus.RUNNING]
            joined = s.scheduler.take(plan.identity, size - generating, s.settings.token_budget, running)
            s.counts["rows"] += len(joined)
            s.waiters.start(joined)
        return joined

    def _penalties(self, rows: list[Request]) -> float | None | list[float | None]:
        """The repetition penalty for retries, None for first passes: one value when all rows
        share it, else one per row."""
        penalties = [self._penalty(r) for r in rows]
        return penalties[0] if len(set(penalties)) == 1 else penalties

    def _penalty(self, request: Request) -> float | None:
        return self.decoding.retry_repetition_penalty if request.retry else None

    def _row_done(self, backend: Backend, request: Request, ids: list[int], *, editors_generating: int) -> None:
        """A row ended while its call goes on (worker thread, inside ``generate``). An editor's row
        is answered now. A batch row is settled now too while no editor waits on this call or in
        the queue, so that work is not left for the moment an editor's request cuts the call;
        otherwise it waits for the call's end (its memory write would delay an editor's steps)."""
        if request.status is not RequestStatus.RUNNING:
            return
        if request.priority is Priority.INTERACTIVE or (
                not editors_generating and not self.state.interactive_waiting.is_set()):
            self._settle(request, backend, _text(backend, request, ids))

    # -- apply -----------------------------------------------------------------------------

    def _apply(self, backend: Backend, called: list[Request], outcome: Outcome) -> None:
        rows = [r for r in called if r.status is RequestStatus.RUNNING]  # not answered yet
        if isinstance(outcome, Exception):
            with self.state.cond:
                self.state.counts["failed_batches"] += 1
            if len(called) > 1 and not isinstance(outcome, BackendUnavailable):
                self._requeue(rows, "isolated", alone=True)  # the bad row will fail alone
            else:
                self._fail(rows, outcome)
            return
        by_request = dict(zip(called, outcome))
        cut = []
        for request in rows:
            output = by_request[request]
            if isinstance(output, Unfinished):
                request.generated = request.generated + list(output)
                cut.append(request)
        self._requeue(cut, "preempted")
        for request in rows:
            output = by_request[request]
            if isinstance(output, str):
                self._settle(request, backend, output)

    def _settle(self, request: Request, backend: Backend, output: str) -> None:
        """Check one output: retry it once, or store it and answer its callers."""
        problem = check_all(request.source, output, glossary=request.glossary,
                            special_tokens=tuple(getattr(backend, "special_tokens", ())))
        # With a penalty of 1.0 the retry would decode the very same tokens: skip it.
        if problem and not request.retry and self.decoding.retry_repetition_penalty != 1.0:
            request.retry, request.generated = True, []
            self._requeue([request], "retries")
            return
        result = Translation(request.source, request.source if problem else output, problem, "model")
        self.state.front.store(request, result)
        with self.state.cond:
            self.state.counts["flagged"] += 1 if problem else 0
            self.state.scheduler.finish([request])
            futures = self.state.waiters.pop(request)
        settle(futures, result)

    def _requeue(self, requests: list[Request], counter: str, *, alone: bool = False) -> None:
        if not requests:
            return
        s = self.state
        with s.cond:
            for request in requests:
                request.alone = request.alone or alone
                if request.priority is Priority.INTERACTIVE and counter != "preempted":
                    s.interactive_waiting.set()  # an editor's retry: stop the call in flight
            s.counts[counter] += len(requests)
            s.scheduler.requeue(requests)
            s.cond.notify_all()

    def _fail(self, requests: list[Request], exc: Exception) -> None:
        with self.state.cond:
            self.state.counts["failed"] += len(requests)
            self.state.scheduler.finish(requests)
            futures = [self.state.waiters.pop(r) for r in requests]
        for group in futures:
            settle(group, exc)


def _history(request: Request) -> list[int]:
    """What a row continues from: its prompt and the tokens earlier, stopped calls generated."""
    return (request.prompt_ids or []) + request.generated


def _text(backend: Backend, request: Request, ids: list[int]) -> str:
    """A row's output: its tokens from earlier calls and this one, decoded."""
    return backend.decode(request.generated + list(ids)).strip()


def _describe(plan: BatchPlan) -> str:
    rows = plan.requests
    return (f"{len(rows)} rows, priority {plan.priority.name}, {plan.padded_tokens} padded tokens, "
            f"prompt lengths {[len(r.prompt_ids or ()) for r in rows]}, "
            f"max_new_tokens {[r.max_new_tokens for r in rows]}")
