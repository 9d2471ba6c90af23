"""The engine: translation memory in front, a scheduler behind, one worker thread on the model.

Threads other than the worker only look things up in the translation memory (``front``) and put
requests on the scheduler (under the shared lock). The worker (``worker.Worker``) owns the
backends; ``backends.Backends`` keeps the one each request was submitted to across adapter
switches; ``waiters.Waiters`` holds the callers' futures.

Cancelling a returned future (``future.cancel()``) is how a caller that moved on says so:
a queued request nobody else waits for is dropped before it reaches the model. Futures are
marked running when their batch starts, so ``cancel()`` then returns False, truthfully.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from asmr_daemon.config import DecodingSettings, EngineSettings
from asmr_daemon.engine.backends import Backends
from asmr_daemon.engine.front import MemoryFront
from asmr_daemon.engine.memory import TranslationMemory
from asmr_daemon.engine.prompts import (
    ContextLine,
    GlossaryEntry,
    build_prompt,
    validate_template,
)
from asmr_daemon.engine.requests import Backend, Priority, Request, Segment, Translation
from asmr_daemon.engine.state import COUNTERS, EngineState
from asmr_daemon.engine.worker import Worker

log = logging.getLogger(__name__)

Future = concurrent.futures.Future


class Engine:
    def __init__(self, backend: Backend, memory: TranslationMemory, *, template: str,
                 decoding: DecodingSettings, engine: EngineSettings) -> None:
        self.memory = memory
        self.template = validate_template(template)
        self.decoding = decoding
        self.settings = engine
        self._front = MemoryFront(memory, template=self.template, decoding=decoding)
        self._state = EngineState(front=self._front, backends=Backends(backend), settings=engine)
        self._cond = self._state.cond
        self._swap_lock = threading.Lock()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._worker: Worker | None = None

    # -- public API (any thread) -----------------------------------------------------------

    @property
    def identity(self) -> str:
        """The identity new requests are keyed with: the newest backend's."""
        with self._cond:
            return self._state.backends.newest.identity

    @property
    def backend(self) -> Backend:
        """The newest backend (the one new requests run on)."""
        with self._cond:
            return self._state.backends.newest

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        with self._cond:
            if self._thread is None:
                self._worker = Worker(self._state, self.decoding)
                self._thread = threading.Thread(target=self._worker.run, name="asmr-engine", daemon=True)
                self._thread.start()

    def configure(self, *, template: str, decoding: DecodingSettings) -> None:
        """New ``[prompt] template`` and ``[decoding]`` (SIGHUP): new requests are prompted, capped
        and keyed with them. ValueError/ConfigError for a bad template (nothing changes)."""
        template = validate_template(template)
        with self._cond:
            self.template, self.decoding = template, decoding
            self._front.template, self._front.decoding = template, decoding
            if self._worker is not None:
                self._worker.decoding = decoding

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
        known = self._front.known_many(segments, identity)
        futures: list[Future[Translation]] = [Future() for _ in segments]
        s = self._state
        with self._cond:
            if s.closing:
                raise RuntimeError("the engine is closed")
            for segment, (key, hit), future in zip(segments, known, futures):
                s.counts["submitted"] += 1
                if hit is not None:
                    s.counts["corrections_served" if hit.origin == "correction" else "memory_hits"] += 1
                    future.set_result(hit)
                    continue
                request = self._request(segment, Priority(priority), identity, key)
                served_by = s.scheduler.add(request)
                s.waiters.attach(served_by, future)
                if served_by is not request:
                    s.counts["deduplicated"] += 1
                if priority == Priority.INTERACTIVE:
                    s.interactive_waiting.set()
                    s.last_editor_request = time.monotonic()
            self._cond.notify_all()
        for future in futures:
            future.add_done_callback(self._on_future_done)
        return futures

    def lookup(self, source: str, *, context: Sequence[ContextLine] = (),
               glossary: Sequence[GlossaryEntry] = ()) -> Translation | None:
        """Correction or translation memory only; never waits for the model (inlay hints)."""
        return self._front.known(source, tuple(context), tuple(glossary), self.identity)

    def record_correction(self, source: str, target: str, *, context: Sequence[ContextLine] = ()) -> None:
        """A human correction: served instead of any model output from now on."""
        self._front.record_correction(source, target, context)
        with self._cond:
            self._state.counts["corrections_recorded"] += 1

    def swap_backend(self, backend: Backend) -> None:
        """Run new requests on ``backend``; the batch in flight and every request submitted
        before the swap finish on the backend they were submitted to."""
        with self._cond:
            self._state.backends.swap(backend)
            self._state.counts["adapter_switches"] += 1
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
        s = self._state
        with self._cond:
            s.closing = True
            drained = s.scheduler.drain()
            s.counts["cancelled"] += len(drained)
            futures = [f for r in drained for f in s.waiters.pop(r)]
            self._cond.notify_all()
            thread = self._thread
        for future in futures:
            future.cancel()
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    @property
    def stats(self) -> dict[str, int]:
        """Counters for benchmarks and ``status`` (``state.COUNTERS``: model_calls, batches, rows,
        retries, memory_hits, preempted, joined, failed, ...), plus the current queue sizes."""
        with self._cond:
            counts = dict.fromkeys(COUNTERS, 0)
            counts.update(self._state.counts)
            counts["waiting"] = self._state.scheduler.num_waiting
            counts["running"] = self._state.scheduler.num_running
            return counts

    # -- helpers ---------------------------------------------------------------------------

    def _request(self, segment: Segment, priority: Priority, identity: str, key: str) -> Request:
        context, glossary = tuple(segment.context), tuple(segment.glossary)
        number = next(self._ids)
        return Request(
            request_id=number, key=key,
            source=segment.source, priority=priority, arrival=number,
            prompt=build_prompt(segment.source, template=self.template, context=context, glossary=glossary),
            context=context, glossary=glossary, identity=identity)

    def _on_future_done(self, future: Future[Translation]) -> None:
        if future.cancelled():
            with self._cond:
                request = self._state.waiters.detach(future)
                if request is not None and self._state.scheduler.abort(request):
                    self._state.counts["cancelled"] += 1
