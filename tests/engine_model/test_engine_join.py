"""The engine on the tiny real model: an editor request joins the running micro-batch, is answered
the step its row ends, and every output equals the unbatched greedy result."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asmr_daemon.config import DEFAULT_TEMPLATE, DecodingSettings, EngineSettings
from asmr_daemon.engine.backend import LocalBackend
from asmr_daemon.engine.engine import Engine, Segment
from asmr_daemon.engine.joining import PREFILL_BUDGET_S
from asmr_daemon.engine.loading import load_model
from asmr_daemon.engine.memory import TranslationMemory
from asmr_daemon.engine.requests import Priority, Translation
from asmr_daemon.engine.scheduler import Scheduler

T = 60  # seconds; only a guard against hangs


@pytest.fixture(scope="module")
def backend(tiny_kit) -> LocalBackend:
    return LocalBackend(load_model(tiny_kit.native_base_dir, tiny_kit.native_adapter_dir,
                                   device="cpu", progress=False))


class HeldAtFirstStep:
    """The real backend, with its first call held at its first decoding step until the test has
    submitted an editor request; records when calls return."""

    preemptible = True
    joins = True

    def __init__(self, inner: LocalBackend) -> None:
        self.inner = inner
        self.identity = inner.identity
        self.special_tokens = inner.special_tokens
        self.started = threading.Event()
        self.go = threading.Event()
        self.events: list[str] = []

    def encode(self, prompt: str) -> list[int]:
        return self.inner.encode(prompt)

    def decode(self, ids: list[int]) -> str:
        return self.inner.decode(ids)

    def generate(self, prompts: list[list[int]], *, should_stop: Callable[[], bool] | None = None,
                 **kwargs: Any) -> list[list[int]]:
        def poll() -> bool:
            if not self.started.is_set():
                self.started.set()
                assert self.go.wait(T)
            return should_stop() if should_stop is not None else False

        out = self.inner.generate(prompts, should_stop=poll, **kwargs)
        self.events.append(f"call of {len(prompts)} returned")
        return out


def make_engine(backend: Any, path: Path, batch_size: int) -> Engine:
    engine = Engine(backend, TranslationMemory(path), template=DEFAULT_TEMPLATE,
                    decoding=DecodingSettings(), engine=EngineSettings(batch_size=batch_size))
    engine.start()
    return engine


def queued_job(backend: Any, path: Path, sources: list[str]) -> tuple[Engine, list[Translation]]:
    """A job of ``sources`` all queued before the worker plans (batch size 8), run to its end: the
    closed engine and the results."""
    engine = Engine(backend, TranslationMemory(path), template=DEFAULT_TEMPLATE,
                    decoding=DecodingSettings(), engine=EngineSettings(batch_size=8))
    job = engine.submit_many([Segment(s) for s in sources])
    engine.start()
    got = [f.result(T) for f in job]
    engine.close()
    return engine, got


def unbatched(backend: LocalBackend, path: Path, sources: list[str]) -> list[Translation]:
    """Each source alone: batch size 1, one at a time, nothing else running."""
    engine = make_engine(backend, path, batch_size=1)
    try:
        return [engine.submit(s).result(T) for s in sources]
    finally:
        engine.close()


def test_an_editor_request_joins_the_running_batch_and_changes_no_output(backend, tiny_kit, tmp_path):
    sources = [p.source for p in tiny_kit.pairs]
    hover_source = min(sources, key=len)
    job_sources = sorted((s for s in sources if s != hover_source), key=len, reverse=True)[:7]
    held = HeldAtFirstStep(backend)
    engine = make_engine(held, tmp_path / "joined.sqlite", batch_size=8)
    job = engine.submit_many([Segment(s) for s in job_sources])
    assert held.started.wait(T)  # the job's micro-batch is on the model
    hover = engine.submit(hover_source, priority=Priority.INTERACTIVE)
    hover.add_done_callback(lambda _: held.events.append("hover answered"))
    held.go.set()
    got_hover, got_job = hover.result(T), [f.result(T) for f in job]
    engine.close()

    expected = unbatched(backend, tmp_path / "alone.sqlite", [hover_source, *job_sources])
    assert [got_hover, *got_job] == expected
    assert all(t.origin == "model" for t in expected)
    # The hover joined the running call, which went on with the oldest rows an editor's call
    # carries; the rest waited (their KV cache kept) and went on in the next call.
    carried = Scheduler().carried(8)
    parked = len(job_sources) - carried
    assert engine.stats["preempted"] == parked and engine.stats["joined"] == 0
    assert held.events[:3] == ["hover answered", f"call of {len(job_sources)} returned", f"call of {parked} returned"]


def test_an_editor_request_stops_a_call_it_cannot_join_and_changes_no_output(backend, tiny_kit, tmp_path):
    """A backend whose calls take no joining rows: the editor's request stops the call, and its
    call carries the oldest rows it cut short along."""
    sources = [p.source for p in tiny_kit.pairs]
    hover_source = min(sources, key=len)
    job_sources = sorted((s for s in sources if s != hover_source), key=len, reverse=True)[:7]
    held = HeldAtFirstStep(backend)
    held.joins = False
    engine = make_engine(held, tmp_path / "stopped.sqlite", batch_size=8)
    job = engine.submit_many([Segment(s) for s in job_sources])
    assert held.started.wait(T)
    hover = engine.submit(hover_source, priority=Priority.INTERACTIVE)
    hover.add_done_callback(lambda _: held.events.append("hover answered"))
    held.go.set()
    got_hover, got_job = hover.result(T), [f.result(T) for f in job]
    engine.close()

    assert [got_hover, *got_job] == unbatched(backend, tmp_path / "alone.sqlite", [hover_source, *job_sources])
    along = Scheduler().carried(8)
    assert engine.stats["preempted"] == len(job_sources) and engine.stats["joined"] == along
    assert held.events[:3] == [f"call of {len(job_sources)} returned", "hover answered",
                               f"call of {1 + along} returned"]


def test_every_output_equals_the_unbatched_greedy_result_under_editor_traffic(backend, tiny_kit, tmp_path):
    sources = [p.source for p in tiny_kit.pairs]
    variants = [f"{prefix}{s}" for prefix in ("", "ねえ、", "（小声で）") for s in sources]
    job_sources, probes = variants[: len(variants) - 6], variants[len(variants) - 6 :]
    engine = make_engine(backend, tmp_path / "busy.sqlite", batch_size=8)
    job = engine.submit_many([Segment(s) for s in job_sources])
    got_probes = [engine.submit(p, priority=Priority.INTERACTIVE).result(T) for p in probes]
    got_job = [f.result(T) for f in job]
    engine.close()
    expected = unbatched(backend, tmp_path / "alone.sqlite", probes + job_sources)
    assert got_probes + got_job == expected


def test_waiting_rows_join_a_running_batch_call_as_its_rows_end_and_change_no_output(backend, tiny_kit, tmp_path):
    sources = [f"{prefix}{p.source}" for prefix in ("", "ねえ、", "（小声で）") for p in tiny_kit.pairs]
    engine, got = queued_job(backend, tmp_path / "joined.sqlite", sources)
    stats = engine.stats
    # Continuous batching: fewer calls than batches of 8, since rows joined the calls as rows ended.
    assert len(sources) > 2 * 8 and stats["model_calls"] < len(sources) / 8
    assert stats["preempted"] == 0
    assert got == unbatched(backend, tmp_path / "alone.sqlite", sources)


class Recorded:
    """The real backend, recording the prefill budget of every call and how many rows joined it."""

    preemptible = True
    joins = True

    def __init__(self, inner: LocalBackend) -> None:
        self.inner, self.identity, self.special_tokens = inner, inner.identity, inner.special_tokens
        self.budgets: list[float | None] = []
        self.joined: list[int] = []

    def encode(self, prompt: str) -> list[int]:
        return self.inner.encode(prompt)

    def decode(self, ids: list[int]) -> str:
        return self.inner.decode(ids)

    def generate(self, prompts: list[list[int]], **kwargs: Any) -> list[list[int]]:
        self.budgets.append(kwargs.get("prefill_budget_s"))
        self.joined.append(0)
        if (more := kwargs.get("more")) is not None:
            def counted(live: list[int], tokens: list[list[int]]) -> Any:
                join = more(live, tokens)
                self.joined[-1] += len(join.rows)
                return join
            kwargs["more"] = counted
        return self.inner.generate(prompts, **kwargs)


def test_the_last_rows_join_the_running_call_as_soon_as_they_fit(backend, tiny_kit, tmp_path):
    """Fewer rows wait than a quarter of the batch: they join once that many rows ended, not in a
    call of their own after this one drained."""
    sources = [p.source for p in tiny_kit.pairs][:9]
    recorded = Recorded(backend)
    _, got = queued_job(recorded, tmp_path / "last.sqlite", sources)
    assert recorded.joined[0] >= 1  # the ninth row joined the first call (retries may join too)
    assert got == unbatched(backend, tmp_path / "alone.sqlite", sources)


class Stopping(Recorded):
    """Takes no joining rows: an editor's request waiting stops the call."""

    joins = False


def test_large_prefill_chunks_and_joining_rows_only_while_no_editor_is_about(backend, tiny_kit, tmp_path):
    sources = [f"{prefix}{p.source}" for prefix in ("", "ねえ、", "（小声で）") for p in tiny_kit.pairs]
    half = len(sources) // 2
    assert half > 2 * 8  # enough waiting rows that rows join a running call
    recorded = Recorded(backend)
    engine = make_engine(recorded, tmp_path / "budget.sqlite", batch_size=8)
    first = [f.result(T) for f in engine.submit_many([Segment(s) for s in sources[:half]])]
    calls = len(recorded.budgets)
    engine.submit(f"（耳元で）{sources[0]}", priority=Priority.INTERACTIVE).result(T)
    second = [f.result(T) for f in engine.submit_many([Segment(s) for s in sources[half:]])]
    engine.close()
    assert set(recorded.budgets[:calls]) == {PREFILL_BUDGET_S}  # nobody hovering: a job's own pace
    assert set(recorded.budgets[calls:]) == {None}  # an editor is about: chunks it waits little for
    # Batch rows join running calls only while nobody hovers.
    assert sum(recorded.joined[:calls]) > 0 and sum(recorded.joined[calls:]) == 0
    assert all(t.origin == "model" for t in first + second)


def test_editor_requests_queued_behind_each_other_all_finish(backend, tiny_kit, tmp_path):
    """With batch size 1, each editor request waiting stops the call of the one before it; every
    call must still move its row on (a call cut before its first step would be cut again on
    resuming, for ever, while the queue stays non-empty)."""
    sources = [p.source for p in tiny_kit.pairs][:6]
    stopping = Stopping(backend)  # each editor's request waiting stops the call
    engine = make_engine(stopping, tmp_path / "queued.sqlite", batch_size=1)
    futures = engine.submit_many([Segment(s) for s in sources], priority=Priority.INTERACTIVE)
    got = [f.result(30) for f in futures]
    engine.close()
    assert got == unbatched(backend, tmp_path / "alone.sqlite", sources)
    assert engine.stats["preempted"] > 0  # the case this is about: calls were cut


def test_a_job_submitted_while_an_editor_sends_request_after_request_advances(backend, tiny_kit, tmp_path):
    """Each hover's answer sends the next one at once (from its done callback), so an editor's
    request is always pending when the call looks for one; the job, submitted with the second
    hover, must still get rows into the editors' call instead of waiting for the editor to stop
    (its requests were tokenized only between editors' requests, and there were none)."""
    sources = [f"{prefix}{p.source}" for prefix in ("", "ねえ、") for p in tiny_kit.pairs]
    hovers, job_sources = sources[:8], sources[8:]
    engine = make_engine(backend, tmp_path / "chained.sqlite", batch_size=8)
    answered: list[Translation] = []
    job: list[Any] = []
    job_done_during_hovers: list[int] = []
    last = threading.Event()

    def next_hover(future: Any) -> None:
        answered.append(future.result())
        if len(answered) == 1:
            job.extend(engine.submit_many([Segment(s) for s in job_sources]))
        if len(answered) == len(hovers):
            job_done_during_hovers.append(sum(f.done() for f in job))
            last.set()
            return
        engine.submit(hovers[len(answered)], priority=Priority.INTERACTIVE).add_done_callback(next_hover)

    engine.submit(hovers[0], priority=Priority.INTERACTIVE).add_done_callback(next_hover)
    assert last.wait(T)
    got_job = [f.result(T) for f in job]
    engine.close()
    assert engine.stats["joined"] > 0 and job_done_during_hovers[0] > 0
    assert answered + got_job == unbatched(backend, tmp_path / "alone.sqlite", hovers + job_sources)
