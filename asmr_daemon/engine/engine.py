"""The engine: translation memory in front, a scheduler behind, one worker thread on the model.

Threads other than the worker only look things up in the translation memory and put
requests on the scheduler (under ``_cond``). The worker owns the backend — tokenizer
included, since fast tokenizers are not safe to share between threads — and its step is:
plan a micro-batch, generate, check, retry the failing rows once with a repetition penalty,
store in memory, resolve the futures.

Adapter switches (``use_adapter`` / ``swap_backend``): new requests bind to the new backend at
once (their memory keys carry its identity); requests submitted before the switch keep the
backend they were keyed with and finish on it, so a file is never translated half by each
adapter. A backend nobody waits for any more is retired on the worker thread (its optional
``retire()`` frees the adapter).

Cancelling a returned future (``future.cancel()``) is how a caller that moved on says so:
a queued request nobody else waits for is dropped before it reaches the model. Futures are
marked running when their batch starts, so ``cancel()`` then returns False, truthfully.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import logging
import math
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from asmr_daemon.config import DecodingSettings, EngineSettings
from asmr_daemon.engine.checks import check_all
from asmr_daemon.engine.memory import TranslationMemory, context_key, translation_key
from asmr_daemon.engine.prompts import (
    ContextLine,
    GlossaryEntry,
    build_prompt,
    validate_template,
)
from asmr_daemon.engine.requests import (
    Backend,
    Priority,
    Request,
    RequestStatus,
    Translation,
    Unfinished,
)
from asmr_daemon.engine.scheduler import BatchPlan, Scheduler
from asmr_daemon.errors import BackendUnavailable

log = logging.getLogger(__name__)

Future = concurrent.futures.Future


class Segment(NamedTuple):
    """One segment for ``submit_many``: the text and what goes into its prompt."""

    source: str
    context: Sequence[ContextLine] = ()
    glossary: Sequence[GlossaryEntry] = ()


class Stats(dict):  # type: ignore[type-arg]
    """A plain dict of counters that may also be called.

    The interface was announced as ``stats -> dict`` while the daemon, CLI and LSP were
    being written in parallel; ``engine.stats["x"]`` and ``engine.stats()["x"]`` both work.
    """

    def __call__(self) -> Stats:
        return self


class Engine:
    def __init__(self, backend: Backend, memory: TranslationMemory, *, template: str,
                 decoding: DecodingSettings, engine: EngineSettings) -> None:
        self.memory = memory
        self.template = validate_template(template)
        self.decoding = decoding
        self.settings = engine
        self._backend = backend  # the newest: new requests bind to it
        self._backends: dict[str, Backend] = {backend.identity: backend}  # identity -> backend in use
        self._swap_lock = threading.Lock()
        self._scheduler = Scheduler()
        # Re-entrant: cancelling a future runs its callback, which takes this lock, and the
        # engine itself cancels futures (close) and resolves them.
        self._cond = threading.Condition(threading.RLock())
        self._ids = itertools.count()
        self._counts: collections.Counter[str] = collections.Counter()
        self._closing = False
        # Set while an interactive request waits: a running batch-priority micro-batch polls it
        # between decoding steps and stops (preemption), so an editor waits at most one step.
        self._interactive_waiting = threading.Event()
        self._thread: threading.Thread | None = None

    # -- public API (any thread) -----------------------------------------------------------

    @property
    def identity(self) -> str:
        """The identity new requests are keyed with: the newest backend's."""
        with self._cond:
            return self._backend.identity

    @property
    def backend(self) -> Backend:
        """The newest backend (the one new requests run on)."""
        with self._cond:
            return self._backend

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="asmr-engine", daemon=True)
                self._thread.start()

    def submit(self, source: str, *, context: Sequence[ContextLine] = (),
               glossary: Sequence[GlossaryEntry] = (),
               priority: Priority = Priority.BATCH) -> Future[Translation]:
        """Translate one segment. Memory hits and corrections resolve before this returns."""
        return self.submit_many([Segment(source, tuple(context), tuple(glossary))], priority=priority)[0]

    def submit_many(self, segments: Sequence[Segment], *,
                    priority: Priority = Priority.BATCH) -> list[Future[Translation]]:
        """Submit several segments atomically, so the worker sees them all in its next plan
        (one by one, it could start a batch with only the first)."""
        identity = self.identity
        futures: list[Future[Translation]] = []
        known = [self._known(s.source, tuple(s.context), tuple(s.glossary), identity) for s in segments]
        with self._cond:
            if self._closing:
                raise RuntimeError("the engine is closed")
            for segment, hit in zip(segments, known):
                future: Future[Translation] = Future()
                futures.append(future)
                self._counts["submitted"] += 1
                if hit is not None:
                    self._counts["corrections_served" if hit.origin == "correction" else "memory_hits"] += 1
                    future.set_result(hit)
                    continue
                context, glossary = tuple(segment.context), tuple(segment.glossary)
                number = next(self._ids)
                request = Request(
                    request_id=number, key=self._key(segment.source, context, glossary, identity),
                    source=segment.source, priority=Priority(priority), arrival=number,
                    prompt=build_prompt(segment.source, template=self.template, context=context,
                                        glossary=glossary),
                    context=context, glossary=glossary, futures=[future], identity=identity)
                if self._scheduler.add(request) is not request:
                    self._counts["deduplicated"] += 1
                if priority == Priority.INTERACTIVE:
                    self._interactive_waiting.set()
            self._cond.notify_all()
        for future in futures:
            future.add_done_callback(self._on_future_done)
        return futures

    def lookup(self, source: str, *, context: Sequence[ContextLine] = (),
               glossary: Sequence[GlossaryEntry] = ()) -> Translation | None:
        """Correction or translation memory only; never waits for the model (inlay hints)."""
        return self._known(source, tuple(context), tuple(glossary), self.identity)

    def record_correction(self, source: str, target: str, *, context: Sequence[ContextLine] = ()) -> None:
        """A human correction: served instead of any model output from now on."""
        self.memory.record_correction(source, target, context_key(context))
        with self._cond:
            self._counts["corrections_recorded"] += 1

    def swap_backend(self, backend: Backend) -> None:
        """Run new requests on ``backend``; the batch in flight and every request submitted
        before the swap finish on the backend they were submitted to."""
        with self._cond:
            # Switching back to an adapter still in use keeps the backend that already has it.
            self._backend = self._backends.setdefault(backend.identity, backend)
            self._counts["adapter_switches"] += 1
            self._cond.notify_all()
        log.info("new requests go to %s", backend.identity)

    def use_adapter(self, adapter_dir: Path) -> str:
        """Switch to another adapter on the same base model; returns the new identity.

        Blocks while the adapter is read and checked (``Backend.with_adapter``, AdapterError when
        unusable); the model keeps translating meanwhile. Concurrent calls are serialised.
        """
        with self._swap_lock:
            new = self.backend.with_adapter(Path(adapter_dir))
            self.swap_backend(new)
            return new.identity

    def close(self, *, wait: bool = True) -> None:
        """Stop: the batch in flight finishes, queued futures are cancelled."""
        with self._cond:
            self._closing = True
            drained = self._scheduler.drain()
            self._counts["cancelled"] += len(drained)
            self._cond.notify_all()
            thread = self._thread
        for request in drained:
            for future in request.futures:
                future.cancel()
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    @property
    def stats(self) -> Stats:
        """Counters for benchmarks and ``status``: model_calls, batches, rows, retries,
        memory_hits, corrections_served, deduplicated, cancelled, flagged, failed_batches,
        plus the current queue sizes."""
        with self._cond:
            counts = Stats({name: 0 for name in (
                "submitted", "memory_hits", "corrections_served", "corrections_recorded",
                "deduplicated", "cancelled", "batches", "model_calls", "rows", "retries",
                "flagged", "failed_batches", "adapter_switches", "preempted")})
            counts.update(self._counts)
            counts["waiting"] = self._scheduler.num_waiting
            counts["running"] = self._scheduler.num_running
            return counts

    # -- lookups ------------------------------------------------------------------------------

    def _key(self, source: str, context: Sequence[ContextLine], glossary: Sequence[GlossaryEntry],
             identity: str) -> str:
        return translation_key(source, context=context, glossary=glossary, identity=identity,
                               template=self.template, decoding=self.decoding)

    def _known(self, source: str, context: tuple[ContextLine, ...],
               glossary: tuple[GlossaryEntry, ...], identity: str) -> Translation | None:
        """A correction (this context, then context-free) beats a stored model output."""
        for ctx in dict.fromkeys((context_key(context), "")):
            target = self.memory.correction_for(source, ctx)
            if target is not None:
                return Translation(source=source, text=target, problem=None, origin="correction")
        hit = self.memory.get(self._key(source, context, glossary, identity))
        if hit is None:
            return None
        # The row may come from a differently spaced source with the same normalised key;
        # a flagged row's text is that source, so give back this caller's own text instead.
        return Translation(source, source if hit.problem else hit.text, hit.problem, "memory")

    def _on_future_done(self, future: Future[Translation]) -> None:
        if future.cancelled():
            with self._cond:
                if self._scheduler.cancel(future) is not None:
                    self._counts["cancelled"] += 1

    # -- worker ------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closing and not self._scheduler.num_waiting and not self._idle_backends():
                    self._cond.wait()
                if self._closing:
                    return
                retired = [self._backends.pop(identity) for identity in self._idle_backends()]
                unprepared = [(self._backend_for(r), r) for r in self._scheduler.waiting() if not r.is_prepared]
            for old in retired:
                self._retire(old)
            for backend, request in unprepared:
                self._prepare(backend, [request])
            with self._cond:
                if self._closing:
                    return
                plan = self._scheduler.plan(max(1, self.settings.batch_size), self.settings.token_budget)
                if plan is None:
                    continue
                self._counts["batches"] += 1
                if not self._scheduler.has_waiting(Priority.INTERACTIVE):
                    self._interactive_waiting.clear()
                for request in plan.requests:
                    # A preempted request's futures are already running.
                    request.futures = [f for f in request.futures
                                       if f.running() or f.set_running_or_notify_cancel()]
                backend = self._backend_for(plan.requests[0])
            try:
                self._step(backend, plan)
            except Exception as exc:  # a bug or a backend failure: this batch only
                if isinstance(exc, BackendUnavailable):  # an outage, not a bug: no traceback
                    log.warning("a batch waits for the generation server: %s", exc.message)
                else:
                    log.exception("translating a batch failed: %s", _describe(plan))
                with self._cond:
                    self._counts["failed_batches"] += 1
                    running = [r for r in plan.requests if r.status is RequestStatus.RUNNING]
                self._resolve(running, exc)

    def _backend_for(self, request: Request) -> Backend:
        """The backend a request was submitted to (under ``_cond``)."""
        return self._backends.get(request.identity, self._backend)

    def _idle_backends(self) -> list[str]:
        """Identities of old backends no waiting request needs any more (under ``_cond``; the
        worker only asks between batches, so nothing is running then)."""
        if len(self._backends) < 2:
            return []
        needed = {r.identity for r in self._scheduler.waiting()} | {self._backend.identity}
        return [identity for identity in self._backends if identity not in needed]

    def _retire(self, backend: Backend) -> None:
        """Let an old backend free what it holds (e.g. its adapter's weights); worker thread only."""
        retire = getattr(backend, "retire", None)
        if retire is None:
            return
        try:
            retire()
            log.info("retired backend %s", backend.identity)
        except Exception:  # freeing memory must not stop the engine
            log.exception("retiring backend %s failed", backend.identity)

    def _prepare(self, backend: Backend, requests: list[Request]) -> None:
        """Tokenize new requests (worker thread only) and set their generation caps."""
        for request in requests:
            try:
                source_tokens = len(backend.encode(request.source))
                ids = backend.encode(request.prompt)
            except Exception as exc:
                log.exception("cannot tokenize %r", request.source[:80])
                with self._cond:
                    self._scheduler.finish([request])
                    futures = list(request.futures)
                for future in futures:
                    _set(future, exc)
                continue
            request.max_new_tokens = max(self.decoding.min_new_tokens,
                                         math.ceil(self.decoding.max_new_tokens_ratio * source_tokens))
            request.prompt_ids = ids

    def _step(self, backend: Backend, plan: BatchPlan) -> None:
        rows = list(plan.requests)
        preemptible = plan.priority is Priority.BATCH and getattr(backend, "preemptible", False)
        raw = self._generate(backend, rows, None,
                             should_stop=self._interactive_waiting.is_set if preemptible else None)
        cut = [(r, out) for r, out in zip(rows, raw) if isinstance(out, Unfinished)]
        if cut:
            with self._cond:
                for request, tokens in cut:
                    request.generated = request.generated + list(tokens)
                self._scheduler.requeue([request for request, _ in cut])
                self._counts["preempted"] += len(cut)
            rows = [r for r, out in zip(rows, raw) if not isinstance(out, Unfinished)]
        outputs = [out for out in raw if not isinstance(out, Unfinished)]
        problems = [self._check(r, out, backend) for r, out in zip(rows, outputs)]
        failing = [i for i, problem in enumerate(problems) if problem]
        if failing:
            with self._cond:
                self._counts["retries"] += len(failing)
            retried = self._generate(backend, [rows[i] for i in failing],
                                     self.decoding.retry_repetition_penalty)
            for i, output in zip(failing, retried):
                outputs[i], problems[i] = output, self._check(rows[i], output, backend)
        results = []
        for request, output, problem in zip(rows, outputs, problems):
            text = request.source if problem else output
            results.append(Translation(request.source, text, problem, "model"))
            try:
                self.memory.put(self._key(request.source, request.context, request.glossary, backend.identity),
                                source=request.source, text=text, problem=problem, identity=backend.identity)
            except Exception:
                log.exception("cannot store a translation in the memory")
        with self._cond:
            self._counts["flagged"] += sum(1 for p in problems if p)
        self._resolve(rows, results)

    def _generate(self, backend: Backend, rows: list[Request], penalty: float | None, *,
                  should_stop: Callable[[], bool] | None = None) -> list[Any]:
        """Decoded outputs (str), or ``Unfinished`` tokens for rows a preemption cut short.

        The first pass continues each row after the tokens an earlier preempted run generated;
        the retry (with ``penalty``) starts over from the prompt.
        """
        with self._cond:
            self._counts["model_calls"] += 1
            self._counts["rows"] += len(rows)
        done = [r.generated if penalty is None else [] for r in rows]
        extra = {} if should_stop is None else {"should_stop": should_stop}
        ids = backend.generate([(r.prompt_ids or []) + d for r, d in zip(rows, done)],
                               max_new_tokens=[r.max_new_tokens - len(d) for r, d in zip(rows, done)],
                               repetition_penalty=penalty, **extra)
        if len(ids) != len(rows):
            raise RuntimeError(f"backend returned {len(ids)} outputs for {len(rows)} prompts")
        return [row if isinstance(row, Unfinished) else backend.decode(d + list(row)).strip()
                for d, row in zip(done, ids)]

    def _check(self, request: Request, output: str, backend: Backend) -> str | None:
        return check_all(request.source, output, glossary=request.glossary,
                         special_tokens=tuple(getattr(backend, "special_tokens", ())))

    def _resolve(self, requests: list[Request], results: list[Translation] | BaseException) -> None:
        """Forget finished requests, then resolve their futures outside the lock."""
        with self._cond:
            self._scheduler.finish(requests)
            futures = [list(r.futures) for r in requests]
        for i, group in enumerate(futures):
            value = results if isinstance(results, BaseException) else results[i]
            for future in group:
                _set(future, value)


def _set(future: Future[Any], value: Any) -> None:
    """Resolve unless the caller cancelled it meanwhile (possible for late duplicates)."""
    if future.done():
        return
    try:
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            future.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass


def _describe(plan: BatchPlan) -> str:
    rows = plan.requests
    return (f"{len(rows)} rows, priority {plan.priority.name}, {plan.padded_tokens} padded tokens, "
            f"prompt lengths {[len(r.prompt_ids or ()) for r in rows]}, "
            f"max_new_tokens {[r.max_new_tokens for r in rows]}")
