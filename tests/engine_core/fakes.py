"""A deterministic stand-in for the model: no torch, no timers.

Prompts are tokenized one code point per id. ``generate`` finds the segment in the prompt
(after ``原文：`` when context or a glossary was prepended), answers from ``outputs`` (or
``retry_outputs`` when a repetition penalty is passed), and otherwise "translates" by turning
every kana into an ideograph. Every call is recorded, with the thread it ran on, so tests
assert batching and ordering; ``block()`` holds ``generate`` until ``release()``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from asmr_daemon.engine.requests import Penalty, row_penalties


def fake_translate(source: str) -> str:
    return "".join(chr(0x4E00 + ord(c) - 0x3000) if 0x3041 <= ord(c) <= 0x30FF else c for c in source)


@dataclass(frozen=True)
class Call:
    sources: tuple[str, ...]
    max_new_tokens: tuple[int, ...]
    repetition_penalty: Penalty
    thread: str


class FakeBackend:
    def __init__(self, outputs: dict[str, str] | None = None, *, retry_outputs: dict[str, str] | None = None,
                 identity: str = "fake-model+fake-lora", fail_on: set[str] | None = None) -> None:
        self.identity = identity
        self.outputs = dict(outputs or {})
        self.retry_outputs = dict(retry_outputs or {})
        self.fail_on = set(fail_on or ())
        self.calls: list[Call] = []
        self.threads: set[str] = set()
        self.started = threading.Event()
        self._gate = threading.Event()
        self._gate.set()

    # -- controls for tests
    def block(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    @property
    def rows(self) -> list[str]:
        return [s for call in self.calls for s in call.sources]

    # -- Backend protocol
    def encode(self, prompt: str) -> list[int]:
        self.threads.add(threading.current_thread().name)
        return [ord(c) for c in prompt]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids)

    def generate(self, prompts: list[list[int]], *, max_new_tokens: list[int],
                 repetition_penalty: Penalty = None) -> list[list[int]]:
        self.threads.add(threading.current_thread().name)
        sources = tuple(self.decode(p).rsplit("原文：\n", 1)[-1] for p in prompts)
        self.calls.append(Call(sources, tuple(max_new_tokens), repetition_penalty,
                               threading.current_thread().name))
        self.started.set()
        assert self._gate.wait(30), "test never released the fake backend"
        if self.fail_on & set(sources):
            raise RuntimeError("CUDA out of memory (fake)")
        penalties = row_penalties(prompts, repetition_penalty)
        answers = [(self.retry_outputs if penalty is not None else self.outputs).get(s, self.outputs.get(s, fake_translate(s)))
                   for s, penalty in zip(sources, penalties)]
        return [self.encode(a)[:n] for a, n in zip(answers, max_new_tokens)]
