"""A fake engine with the real Engine's methods, for language-server tests without a model.

Translations come from ``TABLE`` (else ``译〔source〕``); a source containing ``遅延`` never
finishes unless cancelled (cancellation tests); one containing ``問題`` is flagged.
"""

from __future__ import annotations

import threading
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
