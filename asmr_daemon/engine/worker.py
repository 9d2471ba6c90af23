"""The engine's worker thread: the only thread on the backends (tokenizer included, since fast
tokenizers are not safe to share between threads). Its step: plan a micro-batch, run it, apply.

While a call runs on a preemptible backend, the worker answers it between steps
(``engine/joining.py``): an editor's request joins the running call, and while no editor is
about, waiting batch rows join a batch call as its rows end (continuous batching): a step costs
nearly as much for a few rows as for a full batch, so a call that only drained would run its
last steps near-empty.

Applying a row: an output that fails the checks is re-queued once as a retry (with the repetition
penalty; it may join the running call); a row cut short or parked is re-queued with its tokens so
far and continues from its kept KV cache in a later call; otherwise the row is stored in the
memory and its callers are answered. A preemptible backend reports each row the step it ends, so
it is settled then (a batch row once the editors' rows it shares the call with have ended). When
a call raises, its rows run again alone, so only the bad row fails."""

from __future__ import annotations

import logging
import math
import sys

from asmr_daemon.config import DecodingSettings
from asmr_daemon.engine import threads
from asmr_daemon.engine.backends import retire
from asmr_daemon.engine.checks import check_all
from asmr_daemon.engine.joining import CallHooks, output_text
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

# Requests tokenized between two looks for new editors' requests (500 lines took ~5 ms).
PREPARE_SLICE = 64

Outcome = list[str | Unfinished | None] | Exception
"""Per row: the decoded output, the tokens so far of a row cut short, or None for a row already
settled the step it ended (``CallHooks.row_done``) or parked; or what the call raised."""


class Worker:
    def __init__(self, state: EngineState, decoding: DecodingSettings) -> None:
        self.state = state
        self.decoding = decoding
        self.cpu: threads.CpuShare | None = None  # the model's CPU threads, on a backend on torch
        self._unprepared: list[Request] = []  # queued, not tokenized yet, oldest first: batch ones behind an editor's

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
            self.prepare_waiting()
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

    def prepare_waiting(self, batch_along: int = 0) -> None:
        """Tokenize the requests queued meanwhile: editors' requests first (with the
        ``batch_along`` oldest batch ones, rows that may join their call), and then return, so
        they are planned (or join the running call) at once; batch ones ``PREPARE_SLICE`` at a
        time, looking for editors' requests between slices (tokenizing a job of thousands of
        lines would otherwise delay an editor by all of it)."""
        while True:
            with self.state.cond:
                pending = _editors_first(self._unprepared + self.state.scheduler.unprepared())
                editors = [r for r in pending if r.priority is Priority.INTERACTIVE]
                now = pending[: len(editors) + batch_along] if editors else pending[:PREPARE_SLICE]
                self._unprepared = pending[len(now):]
                backends = [self.state.backends.get(r.identity) for r in now]
            for backend, request in zip(backends, now):
                self._prepare(backend, request)
            if editors or not now:
                return

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
        call = CallHooks(self, plan, backend)
        rows = call.rows
        with self.state.cond:
            self.state.counts["model_calls"] += 1
            self.state.counts["rows"] += len(rows)
        try:
            ids = backend.generate([r.history for r in rows],
                                   max_new_tokens=[r.max_new_tokens - len(r.generated) for r in rows],
                                   repetition_penalty=self._penalties(rows),
                                   **call.hooks())
            if len(ids) != len(rows):
                raise RuntimeError(f"backend returned {len(ids)} outputs for {len(rows)} prompts")
            return rows, [None if index in call.parked else row if isinstance(row, Unfinished)
                          else None if r.status is not RequestStatus.RUNNING else output_text(backend, r, row)
                          for index, (r, row) in enumerate(zip(rows, ids))]
        except Exception as exc:  # a bug or a backend failure: this call's rows only
            if isinstance(exc, BackendUnavailable):  # an outage, not a bug: no traceback
                log.warning("a batch waits for the generation server: %s", exc.message)
            else:
                log.exception("translating a batch failed: %s", _describe(plan))
            return rows, exc

    def _penalties(self, rows: list[Request]) -> float | None | list[float | None]:
        """The repetition penalty for retries, None for first passes: one value when all rows
        share it, else one per row."""
        penalties = [self.penalty(r) for r in rows]
        return penalties[0] if len(set(penalties)) == 1 else penalties

    def penalty(self, request: Request) -> float | None:
        return self.decoding.retry_repetition_penalty if request.retry else None

    # -- apply -----------------------------------------------------------------------------

    def _apply(self, backend: Backend, called: list[Request], outcome: Outcome) -> None:
        # Not answered yet; once each (a row parked, or retried, may have joined the call again).
        rows = list(dict.fromkeys(r for r in called if r.status is RequestStatus.RUNNING))
        if isinstance(outcome, Exception):
            with self.state.cond:
                self.state.counts["failed_batches"] += 1
            if len(called) > 1 and not isinstance(outcome, BackendUnavailable):
                self.requeue(rows, "isolated", alone=True)  # the bad row will fail alone
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
        self.requeue(cut, "preempted")
        for request in rows:
            output = by_request[request]
            if isinstance(output, str):
                self.settle_row(request, backend, output)

    def settle_row(self, request: Request, backend: Backend, output: str) -> None:
        """Check one output: retry it once, or store it and answer its callers."""
        problem = check_all(request.source, output, glossary=request.glossary,
                            special_tokens=tuple(getattr(backend, "special_tokens", ())))
        # With a penalty of 1.0 the retry would decode the very same tokens: skip it.
        if problem and not request.retry and self.decoding.retry_repetition_penalty != 1.0:
            request.retry, request.generated = True, []
            self.requeue([request], "retries")
            return
        result = Translation(request.source, request.source if problem else output, problem, "model")
        self.state.front.store(request, result)
        with self.state.cond:
            self.state.counts["flagged"] += 1 if problem else 0
            self.state.scheduler.finish([request])
            futures = self.state.waiters.pop(request)
        settle(futures, result)

    def requeue(self, requests: list[Request], counter: str, *, alone: bool = False) -> None:
        if not requests:
            return
        s = self.state
        with s.cond:
            for request in requests:
                request.alone = request.alone or alone
                if request.priority is Priority.INTERACTIVE and counter != "preempted":
                    s.interactive_waiting.set()  # an editor's retry: it joins (or stops) the call in flight
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


def _editors_first(requests: list[Request]) -> list[Request]:
    """Editors' requests first, each priority in arrival order; only those still waiting."""
    waiting = [r for r in requests if r.status is RequestStatus.WAITING and not r.is_prepared]
    return sorted(waiting, key=lambda r: r.priority)


def _describe(plan: BatchPlan) -> str:
    rows = plan.requests
    return (f"{len(rows)} rows, priority {plan.priority.name}, {plan.padded_tokens} padded tokens, "
            f"prompt lengths {[len(r.prompt_ids or ()) for r in rows]}, "
            f"max_new_tokens {[r.max_new_tokens for r in rows]}")
