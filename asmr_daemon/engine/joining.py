"""What a running call on a preemptible backend asks the worker between steps, and what it reports.

* An editor's request joins the running call instead of stopping it (``joins = True``: the
  backend polls ``more`` after every step). The call then carries at most as many batch rows as
  an editor's plan would (``Scheduler.carried``); the live batch rows beyond that are parked
  (re-queued with their tokens so far, their KV cache kept for the call that continues them), and
  batch rows join along with the editor's as such a plan would take them. Nothing is planned
  again, no row is cut and resumed, and the editor's row is answered the step it ends.
* An editor's request that cannot join (another adapter's, one to run alone, a call already
  holding ``CALL_BATCHES`` batches of rows) stops the call (``should_stop``); so does any
  editor's request between the chunks of a prefill (``stop_prefill``), which it would otherwise
  wait for one after another.
* While no editor is about, waiting batch rows join a running batch call as its rows end
  (continuous batching, ``_more``).
* A batch row that ends while an editor's row is in the call waits to be settled until the
  editors' rows have ended (its checks and memory write would delay the editor's steps).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from asmr_daemon.engine.requests import Backend, Join, Priority, Request, RequestStatus
from asmr_daemon.engine.scheduler import BatchPlan

if TYPE_CHECKING:
    from asmr_daemon.engine.worker import Worker

# No editor request for this long: a preemptible backend prefills chunks as large as its measured
# cost fits in PREFILL_BUDGET_S (an editor that comes back waits for one such chunk, once), and
# batch rows join running batch calls. While editors are about, rows joined between their
# requests only crowd the calls (tiny model, 30 editor requests: the job kept 0.59 of its speed
# without joining, 0.52 with, the editor's p95 the same; in-process, medians of 4).
# Larger chunks cost less per row where a forward is mostly overhead (tiny model, 320 rows: chunks
# of 8 rows 235 ms, of 32 rows 189 ms; the engine with this budget x1.06, in one process,
# alternating with 8-row chunks, medians of 8).
EDITOR_QUIET_S = 10.0
PREFILL_BUDGET_S = 0.05
# Waiting batch rows join a running batch call once batch_size // JOIN_DIVISOR of its rows ended
# (one prefill forward for them; a step costs nearly as much for 24 rows as for 32), or once
# every row still waiting fits: up to the job's last rows, so the call does not drain to a few
# rows and then start the rest in calls that drain again (tiny model, 320 lines, batch 32, forwards
# counted: 164 -> 132 steps, 119 with the longest rows first, ``Scheduler.take``; the engine
# 567 -> 528 ms, fresh processes alternating, medians of 24 passes. The mid-size random GLM, 64
# lines: 112 -> 100 steps, where a call waiting for a quarter of it to be free had kept its last
# 7 rows waiting 45 steps: 138). A call takes at most CALL_BATCHES x batch_size rows in all, so
# what it keeps per row stays small.
JOIN_DIVISOR = 4
CALL_BATCHES = 16


def output_text(backend: Backend, request: Request, ids: list[int]) -> str:
    """A row's output: its tokens from earlier calls and this one, decoded."""
    return backend.decode(request.generated + list(ids)).strip()


class CallHooks:
    """One call's hooks and bookkeeping: its rows (the plan's, then those that joined), how many
    still generate (editors' among them), batch rows whose settling waits for the editors' rows,
    and the rows parked (their entries in the call's result are stale)."""

    def __init__(self, worker: Worker, plan: BatchPlan, backend: Backend) -> None:
        self.worker, self.state, self.plan, self.backend = worker, worker.state, plan, backend
        self.rows = list(plan.requests)
        self.generating = len(self.rows)
        self.editors = sum(1 for r in self.rows if r.priority is Priority.INTERACTIVE)
        self.deferred: list[tuple[Request, list[int]]] = []
        self.parked: set[int] = set()
        self.joins = bool(getattr(backend, "joins", False))

    def hooks(self) -> dict[str, Any]:
        """The keyword arguments of ``generate``: none for a backend that cannot be preempted."""
        if not getattr(self.backend, "preemptible", False):
            return {}
        extra: dict[str, Any] = {"should_stop": self.should_stop, "on_row_done": self.row_done,
                                 "stop_prefill": self.state.interactive_waiting.is_set}
        quiet = self._quiet()
        if quiet:
            extra["prefill_budget_s"] = PREFILL_BUDGET_S  # larger prefill chunks
        if self.joins or (quiet and self.plan.priority is Priority.BATCH):
            extra["more"] = self.more
        return extra

    def should_stop(self) -> bool:
        """After each step: follow the other processes' load with the CPU threads
        (``CpuShare.tick``); whether an editor's request waits that cannot join this call."""
        if self.worker.cpu is not None:
            self.worker.cpu.tick()
        return self.state.interactive_waiting.is_set() and not (self.joins and self._editor_can_join())

    def row_done(self, index: int, ids: list[int]) -> None:
        """A row ended while the call goes on: an editor's row is answered now, a batch row now
        or once the call's editors' rows have ended."""
        request = self.rows[index]
        self.generating -= 1
        self.editors -= request.priority is Priority.INTERACTIVE
        if request.status is not RequestStatus.RUNNING:
            return
        if request.priority is Priority.INTERACTIVE or not (self.editors or self.state.interactive_waiting.is_set()):
            self.worker.settle_row(request, self.backend, output_text(self.backend, request, ids))
        else:
            self.deferred.append((request, list(ids)))
        if self.deferred and not self.editors:  # on the next editor's path either way
            for late, late_ids in self.deferred:
                if late.status is RequestStatus.RUNNING:
                    self.worker.settle_row(late, self.backend, output_text(self.backend, late, late_ids))
            self.deferred.clear()

    def more(self, live: list[int], tokens: list[list[int]]) -> Join:
        """After each step: editors' requests that join, or while no editor is about, batch rows."""
        park: list[int] = []
        if self.joins and self.state.interactive_waiting.is_set():
            joined, park = self._join_editors(live, tokens)
            self.parked.update(park)
            self.generating -= len(park)
        elif self.plan.priority is Priority.BATCH and not self.editors and self._quiet():
            joined = self._more()
        else:
            return Join()
        self.generating += len(joined)
        self.editors += sum(1 for r in joined if r.priority is Priority.INTERACTIVE)
        self.rows.extend(joined)
        return Join([(r.history, r.max_new_tokens - len(r.generated), self.worker.penalty(r)) for r in joined], park)

    def _quiet(self) -> bool:
        return time.monotonic() - self.state.last_editor_request > EDITOR_QUIET_S

    def _full(self) -> bool:
        """The call holds ``CALL_BATCHES`` batches of rows: none joins it any more."""
        return len(self.rows) >= CALL_BATCHES * max(1, self.state.settings.batch_size)

    def _editor_can_join(self) -> bool:
        s = self.state
        with s.cond:
            return not s.closing and not self._full() and s.scheduler.has_joinable_editor(self.plan.identity)

    def _join_editors(self, live: list[int], tokens: list[list[int]]) -> tuple[list[Request], list[int]]:
        """The editors' requests that join (with the batch rows they take along), and the live
        batch rows beyond what a call carries while editors run, to park."""
        s, rows = self.state, self.rows
        # The editor's request is new. Batch rows join only once tokenized, and while editors'
        # requests keep coming nothing else tokenizes a job submitted meanwhile: a few of its
        # requests are tokenized with the editor's (tiny model, 30 probes one after another on a
        # 400-line job, in one process, alternating, 12 passes each: the job in the burst 107 ->
        # 146 lines/s, the editor's p95 69 -> 65 ms).
        self.worker.prepare_waiting(batch_along=s.scheduler.prefill_rows)
        with s.cond:
            size = max(1, s.settings.batch_size)
            batch_rows = sorted((i for i in live if rows[i].priority is Priority.BATCH), key=lambda i: rows[i])
            park = batch_rows[s.scheduler.carried(size):]  # the newest
            parking = set(park)
            joined = s.scheduler.join(self.plan.identity, [rows[i] for i in live if i not in parking], size,
                                      s.settings.token_budget)
            if not joined:
                return [], []
            for i in park:
                rows[i].generated = rows[i].generated + list(tokens[i])
            s.counts["rows"] += len(joined)
            s.counts["joined"] += sum(1 for r in joined if r.priority is Priority.BATCH)
            if not s.scheduler.has_waiting(Priority.INTERACTIVE):
                s.interactive_waiting.clear()
            s.waiters.start(joined)
        self.worker.requeue([rows[i] for i in park], "preempted")  # after the join: none rejoins at once
        return joined, park

    def _more(self) -> list[Request]:
        """Batch rows that join a running batch call (continuous batching), once a
        ``JOIN_DIVISOR``-th of the batch is free or all the waiting rows fit; none while an editor
        waits or the engine closes."""
        s, rows = self.state, self.rows
        size = max(1, s.settings.batch_size)
        free, waiting = size - self.generating, s.scheduler.num_waiting
        if not waiting or free < max(1, min(size // JOIN_DIVISOR, waiting)) or self._full() \
                or s.interactive_waiting.is_set():
            return []
        self.worker.prepare_waiting()  # requests submitted since the call began
        with s.cond:
            if s.closing:
                return []
            running = [r for r in rows if r.status is RequestStatus.RUNNING]
            joined = s.scheduler.take(self.plan.identity, free, s.settings.token_budget, running, size)
            s.counts["rows"] += len(joined)
            s.waiters.start(joined)
        return joined
