"""The engine with a fake backend: ordering is asserted from recorded calls, never from time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

from asmr_daemon.engine.engine import Engine, Segment
from asmr_daemon.engine.prompts import ContextLine, GlossaryEntry
from asmr_daemon.engine.requests import Priority, Translation, Unfinished
from asmr_daemon.engine.scheduler import Scheduler
from asmr_daemon.engine.worker import PREPARE_SLICE

from .fakes import FakeBackend, fake_translate

T = 10  # seconds; only a guard against hangs, never part of an assertion


def kana(i: int, length: int) -> str:
    """A distinct kana-only segment of ``length`` characters."""
    alphabet = "あいうえおかきくけこさしすせそたちつてと"
    return "".join(alphabet[(i // len(alphabet) ** k + k) % len(alphabet)] for k in range(length))


def test_interactive_requests_jump_ahead_of_the_remaining_batch(make_engine) -> None:
    backend = FakeBackend()
    engine = make_engine(backend, batch_size=16)
    batch = [f"{kana(i, 4)}{i:03d}" for i in range(100)]
    batch_futures = [engine.submit(s) for s in batch]
    backend.block()
    engine.start()
    assert backend.started.wait(T)  # the first batch chunk is on the "GPU"
    interactive = ["ねえ、聞いてる？", "こっちおいで"]
    editor = [engine.submit(s, priority=Priority.INTERACTIVE) for s in interactive]
    backend.release()
    for f in editor + batch_futures:
        f.result(T)
    assert len(backend.calls[0].sources) == 16
    # Served in the very next step, which carries the oldest batch rows along: as many new rows
    # as make one prefill chunk with the two editor rows.
    along = min(16 // Scheduler().join_divisor, Scheduler().prefill_rows - 2)
    assert set(backend.calls[1].sources[:2]) == set(interactive)
    assert backend.calls[1].sources[2:] == tuple(batch[16 : 16 + along])
    assert sorted(backend.rows) == sorted(batch + interactive)  # everything exactly once
    assert all(len(c.sources) <= 16 for c in backend.calls)
    assert editor[0].result().text == fake_translate(interactive[0])
    assert backend.threads == {"asmr-engine"}  # tokenizer and model only on the worker
    assert engine.stats["batches"] == len(backend.calls) == 1 + 1 + -(-(100 - 16 - along) // 16)
    assert engine.stats["joined"] == along


def test_batches_are_length_sorted(make_engine) -> None:
    backend = FakeBackend()
    engine = make_engine(backend, batch_size=2)
    sources = ["あいうえおかきくけこ", "あ", "あいうえおかきくけこさ", "あい"]
    futures = [engine.submit(s) for s in sources]
    engine.start()
    for f in futures:
        f.result(T)
    # Similar lengths share a batch; the batch holding the oldest request goes first.
    assert [c.sources for c in backend.calls] == [("あいうえおかきくけこ", "あいうえおかきくけこさ"), ("あ", "あい")]


def test_identical_segments_are_computed_once(make_engine) -> None:
    backend = FakeBackend()
    engine = make_engine(backend)
    futures = [engine.submit("はぁ…はぁ…") for _ in range(3)]
    futures.append(engine.submit("はぁ…はぁ…", priority=Priority.INTERACTIVE))
    engine.start()
    results = {f.result(T) for f in futures}
    assert len(results) == 1 and backend.rows == ["はぁ…はぁ…"]
    assert engine.stats["deduplicated"] == 3


def test_cancelled_queued_futures_never_run(make_engine) -> None:
    backend = FakeBackend()
    engine = make_engine(backend)
    keep = engine.submit("のこる")
    gone = engine.submit("きえる")
    shared_a, shared_b = engine.submit("いっしょ"), engine.submit("いっしょ")
    assert gone.cancel() and shared_a.cancel()
    gone.cancel()  # idempotent
    engine.start()
    assert keep.result(T).text == fake_translate("のこる")
    assert shared_b.result(T).text == fake_translate("いっしょ")
    assert "きえる" not in backend.rows
    assert engine.stats["cancelled"] == 1


def test_futures_of_a_running_batch_cannot_be_cancelled(make_engine) -> None:
    backend = FakeBackend()
    backend.block()
    engine = make_engine(backend, start=True)
    running = engine.submit("いま")
    assert backend.started.wait(T)
    assert not running.cancel()
    backend.release()
    assert running.result(T).origin == "model"


def test_memory_hit_skips_the_backend(make_engine) -> None:
    first = make_engine(FakeBackend(), start=True)
    assert first.submit("おはよう").result(T).origin == "model"
    first.close()
    backend = FakeBackend()
    engine = make_engine(backend)  # not even started: a hit needs no worker
    future = engine.submit("  おはよう ")
    assert future.done()
    assert future.result() == Translation("  おはよう ", fake_translate("おはよう"), None, "memory")
    assert backend.calls == [] and engine.stats["memory_hits"] == 1
    assert engine.lookup("おはよう").text == fake_translate("おはよう")
    assert engine.lookup("おやすみ") is None
    other = make_engine(FakeBackend(identity="fake-model+new-lora"))
    assert other.lookup("おはよう") is None  # another adapter: another key


def test_a_correction_wins(make_engine) -> None:
    backend = FakeBackend()
    engine = make_engine(backend, start=True)
    assert engine.submit("すき").result(T).origin == "model"
    engine.record_correction("すき", "喜欢你")
    again = engine.submit("すき")
    assert again.done() and again.result() == Translation("すき", "喜欢你", None, "correction")
    assert len(backend.calls) == 1
    # Context-specific correction beats the context-free one; other adapters see it too.
    ctx = [ContextLine("ねえ")]
    engine.record_correction("すき", "我喜欢", context=ctx)
    assert engine.lookup("すき", context=ctx).text == "我喜欢"
    assert engine.lookup("すき", context=[ContextLine("別")]).text == "喜欢你"
    other = make_engine(FakeBackend(identity="another"))
    assert other.lookup("すき").origin == "correction"


def test_failing_row_is_retried_once_with_repetition_penalty(make_engine) -> None:
    backend = FakeBackend({"あのね": "那个" * 12, "うん": "嗯"}, retry_outputs={"あのね": "那个呀"})
    engine = make_engine(backend, retry_repetition_penalty=1.3)
    bad, good = engine.submit("あのね"), engine.submit("うん")
    engine.start()
    assert bad.result(T) == Translation("あのね", "那个呀", None, "model")
    assert good.result(T).text == "嗯"
    assert [(c.sources, c.repetition_penalty) for c in backend.calls] == [
        (("うん", "あのね"), None), (("あのね",), 1.3)]


def test_second_failure_keeps_the_source_and_reports_the_problem(make_engine, memory) -> None:
    backend = FakeBackend({"ちゅぱちゅぱ": "ちゅぱちゅぱ"}, retry_outputs={"ちゅぱちゅぱ": "ちゅぱちゅぱ"})
    engine = make_engine(backend, start=True)
    result = engine.submit("ちゅぱちゅぱ").result(T)
    assert result == Translation("ちゅぱちゅぱ", "ちゅぱちゅぱ", "leftover kana", "model")
    assert len(backend.calls) == 2 and engine.stats["flagged"] == 1
    assert memory.accepted() == []  # flagged rows are never training data
    again = engine.submit("ちゅぱちゅぱ")
    assert again.done() and again.result().problem == "leftover kana" and len(backend.calls) == 2


def test_glossary_term_must_be_used(make_engine) -> None:
    backend = FakeBackend({"ミナちゃん": "小米"}, retry_outputs={"ミナちゃん": "米娜酱"})
    engine = make_engine(backend, start=True)
    result = engine.submit("ミナちゃん", glossary=[GlossaryEntry("ミナ", "米娜")]).result(T)
    assert result.text == "米娜酱" and result.problem is None and len(backend.calls) == 2


def test_a_poisoned_row_fails_alone_and_its_batch_mates_succeed(make_engine, caplog, memory) -> None:
    backend = FakeBackend(fail_on={"あいう"})
    engine = make_engine(backend, batch_size=4, start=False)
    sources = ("あいう", "かきく", "さしす", "たちつ")
    futures = [engine.submit(s) for s in sources]
    with caplog.at_level(logging.ERROR):
        engine.start()
        for f in futures[1:]:
            assert f.result(T) == Translation(f.result().source, fake_translate(f.result().source), None, "model")
    with pytest.raises(RuntimeError, match="out of memory"):
        futures[0].result(T)
    assert "4 rows" in caplog.text and "padded tokens" in caplog.text  # the batch state is logged
    # The failing batch's rows ran again one by one: only the poisoned one failed.
    assert sorted(c.sources for c in backend.calls[1:]) == sorted((s,) for s in sources)
    stats = engine.stats
    assert (stats["failed_batches"], stats["isolated"], stats["failed"]) == (2, 4, 1)
    assert sorted(s for s, _ in memory.accepted()) == sorted(sources[1:])  # nothing cached for the bad row
    assert engine.submit("かきく").result(T).origin == "memory"  # the loop goes on
    assert engine.submit("あいう").exception(T) is not None  # a failure is not remembered


def test_an_outage_fails_the_whole_batch_without_retrying_each_row(make_engine) -> None:
    from asmr_daemon.errors import BackendUnavailable

    class Down(FakeBackend):
        def generate(self, prompts, **kwargs):
            super().generate(prompts, **kwargs)
            raise BackendUnavailable("connection refused", "start the server")

    backend = Down()
    engine = make_engine(backend, batch_size=4)
    futures = [engine.submit(s) for s in ("あいう", "かきく")]
    engine.start()
    for f in futures:
        with pytest.raises(BackendUnavailable):
            f.result(T)
    assert len(backend.calls) == 1 and engine.stats["failed"] == 2


def test_max_new_tokens_follows_the_source_length(make_engine) -> None:
    backend = FakeBackend()
    engine = make_engine(backend, start=True, max_new_tokens_ratio=3.0, min_new_tokens=16)
    long_source = "あ" * 20
    engine.submit(long_source).result(T)
    engine.submit("あ").result(T)
    assert [c.max_new_tokens for c in backend.calls] == [(60,), (16,)]


def test_close_finishes_the_batch_in_flight_and_cancels_the_queue(make_engine) -> None:
    backend = FakeBackend()
    engine = make_engine(backend, batch_size=1)
    backend.block()
    engine.start()
    flying = engine.submit("いま")
    assert backend.started.wait(T)
    queued = engine.submit("あとで")
    engine.close(wait=False)
    assert queued.cancelled()
    backend.release()
    assert flying.result(T).origin == "model"
    engine.close()
    assert backend.rows == ["いま"]
    with pytest.raises(RuntimeError):
        engine.submit("もう遅い")


def test_swap_backend_lets_the_running_batch_finish_on_the_old_one(make_engine, memory) -> None:
    old = FakeBackend(identity="base+lora-1")
    new = FakeBackend({"つぎ": "下一个"}, identity="base+lora-2")
    engine = make_engine(old, batch_size=1)
    old.block()
    engine.start()
    first = engine.submit("まえ")
    assert old.started.wait(T)
    queued = engine.submit("あと")  # submitted before the swap: stays on the old backend
    engine.swap_backend(new)
    assert engine.identity == "base+lora-2"
    second = engine.submit("つぎ")
    old.release()
    assert first.result(T).origin == "model" and second.result(T).text == "下一个"
    assert queued.result(T).text == fake_translate("あと")
    assert old.rows == ["まえ", "あと"] and new.rows == ["つぎ"]
    assert engine.lookup("つぎ").text == "下一个"
    assert engine.lookup("あと") is None  # stored under the old identity only


def test_interactive_request_on_the_new_backend_overtakes_old_batch_work(make_engine) -> None:
    from asmr_daemon.engine.requests import Priority

    old = FakeBackend(identity="base+lora-1")
    new = FakeBackend({"つぎ": "下一个"}, identity="base+lora-2")
    engine = make_engine(old, batch_size=1)
    old.block()
    engine.start()
    running = engine.submit("まえ")
    assert old.started.wait(T)
    batch = [engine.submit(s) for s in ("いち", "に")]
    engine.swap_backend(new)
    hover = engine.submit("つぎ", priority=Priority.INTERACTIVE)
    old.release()
    assert hover.result(T).text == "下一个" and all(f.result(T) for f in [running, *batch])
    assert old.rows == ["まえ", "いち", "に"] and new.rows == ["つぎ"]
    assert engine.stats["adapter_switches"] == 1


def test_submit_many_lands_in_one_plan_while_the_worker_runs(make_engine) -> None:
    from asmr_daemon.engine.engine import Segment

    backend = FakeBackend()
    engine = make_engine(backend, start=True)
    assert engine.submit("さいしょ").result(T)  # the worker is up and idle
    futures = engine.submit_many([Segment("いち"), Segment("に"), Segment("さん")])
    assert [f.result(T).text for f in futures] == [fake_translate(s) for s in ("いち", "に", "さん")]
    assert sorted(backend.calls[1].sources) == sorted(["いち", "に", "さん"])
    assert engine.stats["batches"] == 2


class PreemptibleBackend(FakeBackend):
    """A fake whose batch-priority calls can be cut short like the local model's: when told to
    stop, the first row has finished and every other row has generated two tokens; a later call
    with those two tokens after the prompt continues from there."""

    preemptible = True

    def __init__(self) -> None:
        super().__init__()
        self.stop_polls: list[bool] = []
        self.partial: dict[str, str] = {}  # prompt text + tokens so far -> the tokens so far

    def generate(self, prompts, *, max_new_tokens, repetition_penalty=None, should_stop=None, on_row_done=None,
                 prefill_budget_s=None, more=None, stop_prefill=None):
        texts = [self.decode(p) for p in prompts]
        resumed = [(t[: len(t) - len(self.partial[t])], self.partial[t]) if t in self.partial else (t, "")
                   for t in texts]
        outputs = super().generate([self.encode(t) for t, _ in resumed],
                                   max_new_tokens=[n + len(sofar) for n, (_, sofar) in zip(max_new_tokens, resumed)],
                                   repetition_penalty=repetition_penalty)
        outputs = [out[len(sofar):] for out, (_, sofar) in zip(outputs, resumed)]
        if should_stop is not None:
            stop = should_stop()
            self.stop_polls.append(stop)
            if stop:
                cut = [outputs[0]]
                for (text, _), out in zip(resumed[1:], outputs[1:]):
                    sofar = self.decode(out[:2])
                    self.partial[text + sofar] = sofar
                    cut.append(Unfinished(out[:2]))
                return cut
        return outputs


def test_an_editor_request_joins_the_batch_rows_it_stopped_and_nothing_is_lost(make_engine):
    backend = PreemptibleBackend()
    engine = make_engine(backend, batch_size=4, start=True)
    backend.block()
    batch = engine.submit_many([Segment(f"ファイルの行{i}です") for i in range(8)], priority=Priority.BATCH)
    assert backend.started.wait(10)
    hover = engine.submit("ひとつだけ", priority=Priority.INTERACTIVE)
    backend.release()
    assert hover.result(10).text == fake_translate("ひとつだけ")
    results = [f.result(10).text for f in batch]
    assert results == [fake_translate(f"ファイルの行{i}です") for i in range(8)]  # exact, none lost
    first, second = backend.calls[0].sources, backend.calls[1].sources
    # The hover ran right after the cut, carrying the oldest rows it cut short along.
    along = max(1, 4 // Scheduler().join_divisor)
    assert len(first) == 4 and second == ("ひとつだけ", *first[1 : 1 + along])
    assert backend.stop_polls[0] is True
    assert engine.stats["preempted"] == 3 and engine.stats["joined"] == along
    # The three cut rows continued (prompt + their two tokens) instead of starting over.
    assert len(backend.partial) == 3
    assert engine.stats["rows"] == 8 + 1 + 3


def test_no_retry_when_the_penalty_would_change_nothing(make_engine) -> None:
    backend = FakeBackend({"あのね": "那个" * 12})
    engine = make_engine(backend, start=True, retry_repetition_penalty=1.0)
    assert engine.submit("あのね").result(T).problem == "repetition"
    assert len(backend.calls) == 1 and engine.stats["retries"] == 0


def test_the_worker_runs_the_model_on_the_configured_cpu_threads(memory, caplog) -> None:
    import torch

    from asmr_daemon.config import DecodingSettings, EngineSettings
    from asmr_daemon.engine.engine import Engine

    seen: list[int] = []

    class Recording(FakeBackend):
        def generate(self, prompts, **kwargs):
            seen.append(torch.get_num_threads())
            return super().generate(prompts, **kwargs)

    engine = Engine(Recording(), memory, template="{source}", decoding=DecodingSettings(),
                    engine=EngineSettings(cpu_threads=1))
    with caplog.at_level(logging.INFO, logger="asmr_daemon.engine.worker"):
        engine.start()
        engine.submit("いち").result(T)
    engine.close()
    assert seen == [1]
    assert "the model runs on 1 CPU thread(s) ([engine] cpu_threads = 1)" in caplog.text


def test_cpu_threads_0_follows_the_other_processes_load(memory, caplog, monkeypatch) -> None:
    """The default: every core other processes leave idle, looked at between steps and calls."""
    import torch

    from asmr_daemon.config import DecodingSettings, EngineSettings
    from asmr_daemon.engine import threads
    from asmr_daemon.engine.engine import Engine

    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "INTERVAL_S", 0.0)  # look at every tick
    monkeypatch.setattr(threads, "FIRST_LOOK_S", 0.0)
    loads = iter([0.0, 0.0] + [1.0] * 1000)  # then another process takes a core
    monkeypatch.setattr(threads.OthersLoad, "busy_cores", lambda self: next(loads))
    seen: list[int] = []

    class Recording(FakeBackend):
        def generate(self, prompts, **kwargs):
            seen.append(torch.get_num_threads())
            return super().generate(prompts, **kwargs)

    before = torch.get_num_threads()
    engine = Engine(Recording(), memory, template="{source}", decoding=DecodingSettings(), engine=EngineSettings())
    try:
        with caplog.at_level(logging.INFO, logger="asmr_daemon.engine"):
            engine.start()
            for line in ("いち", "に", "さん", "よん"):  # a look before each call at least
                engine.submit(line).result(T)
        engine.close()
    finally:
        torch.set_num_threads(before)
    assert "the model runs on 1 CPU thread(s) ([engine] cpu_threads = 0: every core of 2" in caplog.text
    assert "the model now runs on 2 CPU thread(s): other processes keep 0.0 of 2 cores busy" in caplog.text
    assert 2 in seen and seen[-1] == 1
    assert "the model now runs on 1 CPU thread(s): other processes keep 1.0 of 2 cores busy" in caplog.text


class EncodeRecorder(FakeBackend):
    """Records every text it tokenizes; ``on_encode(count)`` runs before each (worker thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoded: list[str] = []
        self.on_encode = lambda count: None

    def encode(self, prompt: str) -> list[int]:
        self.on_encode(len(self.encoded))
        self.encoded.append(prompt)
        return super().encode(prompt)

    def generate(self, prompts: list[list[int]], **kwargs: Any) -> list[list[int]]:
        self.encoded.append("(generate)")
        return super().generate(prompts, **kwargs)


def job_with_more_queued_at_the_tenth_encode(make_engine, queue_more: Callable[[Engine], list[Future[Translation]]]):
    """An engine tokenizing a job of four slices, and what ``queue_more`` queues while the job's
    first slice is tokenized: the recorder, the job's futures, the others'."""
    backend = EncodeRecorder()
    engine = make_engine(backend, batch_size=16)
    job = engine.submit_many([Segment(f"ぎょうの{i}") for i in range(4 * PREPARE_SLICE)])
    more: list[Future[Translation]] = []
    submitted = threading.Event()

    def queue_at_the_tenth(count: int) -> None:
        if count == 10:
            more.extend(queue_more(engine))
            submitted.set()

    backend.on_encode = queue_at_the_tenth
    engine.start()
    assert submitted.wait(10)
    return backend, job, more


def test_an_editors_request_is_tokenized_before_the_rest_of_a_large_job_queued_ahead_of_it(make_engine):
    backend, job, hover = job_with_more_queued_at_the_tenth_encode(
        make_engine, lambda engine: [engine.submit("ひとつだけ", priority=Priority.INTERACTIVE)])
    assert hover[0].result(10).text == fake_translate("ひとつだけ")
    assert [f.result(10).text for f in job] == [fake_translate(f"ぎょうの{i}") for i in range(4 * PREPARE_SLICE)]
    first = next(i for i, text in enumerate(backend.encoded) if "ひとつだけ" in text)
    # Two texts a request (source and prompt): after the slice in flight, and it runs at once,
    # not after the whole job is tokenized.
    assert first <= 2 * PREPARE_SLICE + 1 and backend.encoded.index("(generate)") == first + 2
    assert backend.calls[0].sources[0] == "ひとつだけ"


def test_requests_are_tokenized_in_the_order_they_were_queued(make_engine):
    """A job queued while an earlier one is still being tokenized waits behind it: batch rows
    join calls oldest first, and only tokenized rows can."""
    backend, first_job, second_job = job_with_more_queued_at_the_tenth_encode(
        make_engine, lambda engine: engine.submit_many([Segment(f"つぎの{i}") for i in range(PREPARE_SLICE)]))
    for future in first_job + second_job:
        future.result(10)
    sources = [text for text in backend.encoded if "ぎょうの" in text or "つぎの" in text]
    assert max(i for i, text in enumerate(sources) if "ぎょうの" in text) < min(
        i for i, text in enumerate(sources) if "つぎの" in text)
