"""A fake engine with the real Engine's methods, for language-server tests without a model.

Translations come from ``TABLE`` (else ``译〔source〕``); a source containing ``遅延`` never
finishes unless cancelled (cancellation tests); one containing ``問題`` is flagged.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

from asmr_daemon.engine.requests import Priority, Translation

TABLE = {
    "【トラック1　耳かき】": "【音轨1 掏耳朵】",
    "おはようございます": "早上好",
    "耳かきしますね": "我来给你掏耳朵哦",
    "ゆっくり休んでね": "好好休息吧",
    "問題のある行です": "有问题的行",
}
SLOW = "遅延"
FLAGGED = "問題"


def fake_translate(source: str) -> str:
    return TABLE.get(source, f"译〔{source}〕")


class FakeEngine:
    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.memory: dict[str, Translation] = {}
        self.corrections: list[tuple[str, str]] = []
        self.submitted: list[tuple[str, str]] = []
        self.cancelled: list[str] = []
        self._lock = threading.Lock()

    def _translation(self, source: str) -> Translation:
        problem = "leftover kana" if FLAGGED in source else None
        return Translation(source=source, text=fake_translate(source), problem=problem, origin="model")

    def submit(self, source: str, *, context: Any = (), glossary: Any = (), priority: Priority = Priority.BATCH) -> Future:
        with self._lock:
            self.submitted.append((source, priority.name))
        future: Future = Future()
        future.add_done_callback(lambda f: f.cancelled() and self.cancelled.append(source))
        if SLOW in source:
            return future

        def finish() -> None:
            result = self._translation(source)
            with self._lock:
                self.memory[source] = result
            if future.set_running_or_notify_cancel():
                future.set_result(result)

        threading.Timer(self.delay, finish).start()
        return future

    def submit_many(self, segments: Any, *, priority: Priority = Priority.BATCH) -> list[Future]:
        """Like ``Engine.submit_many``: segments carry ``source``, ``context``, ``glossary``."""
        return [self.submit(s.source, context=s.context, glossary=s.glossary, priority=priority) for s in segments]

    def lookup(self, source: str, *, context: Any = (), glossary: Any = ()) -> Translation | None:
        with self._lock:
            return self.memory.get(source)

    def record_correction(self, source: str, target: str, *, context: Any = ()) -> None:
        with self._lock:
            self.corrections.append((source, target))
            self.memory[source] = Translation(source=source, text=target, problem=None, origin="correction")

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "submitted": [list(s) for s in self.submitted],
                "corrections": [list(c) for c in self.corrections],
                "cancelled": list(self.cancelled),
                "memory": sorted(self.memory),
            }


class SerialEngine(FakeEngine):
    """One model, like the real engine: requests are served in submission order, ``batch`` at
    a time, ``delay`` seconds per batch (the fairness tests measure waiting behind a flood)."""

    def __init__(self, batch: int = 8, delay: float = 0.02) -> None:
        super().__init__(delay)
        self.batch = batch
        self._queue: list[tuple[str, Future]] = []
        self.served: list[str] = []  # in the order the "model" answered them
        self.queued_at: dict[str, int] = {}  # source -> len(served) when it was submitted
        self._wake = threading.Condition()
        self._closed = False
        threading.Thread(target=self._serve, name="serial-engine", daemon=True).start()

    def submit(self, source: str, *, context: Any = (), glossary: Any = (), priority: Priority = Priority.BATCH) -> Future:
        with self._lock:
            self.submitted.append((source, priority.name))
        future: Future = Future()
        with self._wake:
            self.queued_at.setdefault(source, len(self.served))
            self._queue.append((source, future))
            self._wake.notify()
        return future

    def served_before(self, source: str) -> int:
        """How many requests the model answered between ``source``'s submission and its answer."""
        with self._wake:
            return self.served.index(source) - self.queued_at[source]

    def waiting(self) -> int:
        with self._wake:
            return sum(1 for _, f in self._queue if not f.done())

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()

    def _serve(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                taken, self._queue = self._queue[: self.batch], self._queue[self.batch :]
            time.sleep(self.delay)
            with self._wake:
                self.served.extend(source for source, future in taken if not future.cancelled())
            for source, future in taken:
                if future.set_running_or_notify_cancel():
                    result = self._translation(source)
                    with self._lock:
                        self.memory[source] = result
                    future.set_result(result)
