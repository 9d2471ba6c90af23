"""Documents through the engine with the fake backend."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest

from asmr_daemon.engine.glossary import Glossary
from asmr_daemon.engine.prompts import GlossaryEntry
from asmr_daemon.engine.requests import Priority
from asmr_daemon.pipeline import LineTranslation, translate_document, translate_line
from asmr_daemon.scripts import Document, Line, LineKind

from .fakes import FakeBackend, fake_translate

T = 10


def text(index: int, *segments: str) -> Line:
    body = "".join(segments)
    return Line(index, body, LineKind.TEXT, body=body, segments=segments)


def verbatim(index: int, raw: str) -> Line:
    return Line(index, raw, LineKind.VERBATIM)


def sample() -> Document:
    return Document([
        verbatim(0, "【トラック1】"),
        text(1, "ねえ、起きて。", "もう朝だよ。"),
        verbatim(2, ""),
        text(3, "ふー…"),
        text(4, "おはよう、お兄ちゃん"),
    ], format="txt")


def expected(line: Line) -> LineTranslation:
    return LineTranslation(line.index, line.body, "".join(fake_translate(s) for s in line.segments), ())


def test_document_to_exact_line_translations(make_engine) -> None:
    backend = FakeBackend()
    engine = make_engine(backend, start=True)
    doc = sample()
    progress: list[tuple[int, int]] = []
    result = translate_document(engine, doc, progress=lambda done, total: progress.append((done, total)))
    assert result == {i: expected(doc.lines[i]) for i in (1, 3, 4)}
    assert result[1].text == fake_translate("ねえ、起きて。") + fake_translate("もう朝だよ。")
    assert sorted(backend.rows) == sorted(["ねえ、起きて。", "もう朝だよ。", "ふー…", "おはよう、お兄ちゃん"])
    assert len(backend.calls) == 1  # every segment of the document submitted at once: one batch
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    assert progress[-1] == (3, 3) and all(total == 3 for _, total in progress)


def test_second_run_comes_from_memory_even_with_context(make_engine) -> None:
    backend = FakeBackend()
    engine = make_engine(backend, start=True)
    first = translate_document(engine, sample(), context_lines=2)
    calls = len(backend.calls)
    progress: list[tuple[int, int]] = []
    again = translate_document(engine, sample(), context_lines=2,
                               progress=lambda d, t: progress.append((d, t)))
    assert again == first and len(backend.calls) == calls
    assert progress[-1] == (3, 3)


def test_context_carries_preceding_bodies_and_known_translations(make_engine) -> None:
    backend = FakeBackend()
    engine = make_engine(backend, start=True)
    doc = sample()
    translate_line(engine, doc, 1).result(T)
    prompts: list[str] = []
    original = backend.generate

    def spy(prompts_ids, **kwargs):  # type: ignore[no-untyped-def]
        prompts.extend(backend.decode(p) for p in prompts_ids)
        return original(prompts_ids, **kwargs)

    backend.generate = spy  # type: ignore[method-assign]
    translate_line(engine, doc, 3, context_lines=1).result(T)
    known = fake_translate("ねえ、起きて。") + fake_translate("もう朝だよ。")
    assert prompts == [f"上文（仅供参考，不要翻译）：\nねえ、起きて。もう朝だよ。（{known}）\n原文：\nふー…"]


def test_glossary_entries_reach_the_prompt_per_segment(make_engine) -> None:
    backend = FakeBackend({"ミナ、おいで": "米娜，过来"})
    engine = make_engine(backend, start=True)
    doc = Document([text(0, "ミナ、おいで"), text(1, "うん")], format="txt")
    glossary = Glossary((GlossaryEntry("ミナ", "米娜"),))
    result = translate_document(engine, doc, glossary=glossary)
    assert result[0].text == "米娜，过来" and result[0].problems == ()
    assert result[1].text == fake_translate("うん")


def test_problems_are_collected_per_line(make_engine) -> None:
    backend = FakeBackend({"ちゅぱ、ちゅぱ": "ちゅぱ、ちゅぱ"}, retry_outputs={"ちゅぱ、ちゅぱ": "ちゅぱ、ちゅぱ"})
    engine = make_engine(backend, start=True)
    doc = Document([text(0, "あのね。", "ちゅぱ、ちゅぱ")], format="txt")
    line = translate_document(engine, doc)[0]
    assert line.text == fake_translate("あのね。") + "ちゅぱ、ちゅぱ"
    assert line.problems == ("leftover kana",)


def test_cancel_cancels_outstanding_requests(make_engine) -> None:
    backend = FakeBackend()
    engine = make_engine(backend, batch_size=1)
    backend.block()
    engine.start()
    doc = Document([text(i, f"せりふ{i}") for i in range(5)], format="txt")
    cancel = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            translate_document(engine, doc, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert backend.started.wait(T)
    cancel.set()
    worker.join(T)
    assert len(errors) == 1 and isinstance(errors[0], concurrent.futures.CancelledError)
    backend.release()
    engine.close()
    assert backend.rows == ["せりふ0"]  # only the batch already running


def test_translate_line_is_interactive_and_cancellable(make_engine) -> None:
    backend = FakeBackend()
    engine = make_engine(backend, batch_size=1)
    doc = sample()
    batch = translate_line(engine, doc, 4, priority=Priority.BATCH)
    hover = translate_line(engine, doc, 1)
    dropped = translate_line(engine, doc, 3)
    assert dropped.cancel()
    engine.start()
    assert hover.result(T) == expected(doc.lines[1])
    assert batch.result(T) == expected(doc.lines[4])
    assert backend.rows[:2] == ["ねえ、起きて。", "もう朝だよ。"] and "ふー…" not in backend.rows
    with pytest.raises(ValueError):
        translate_line(engine, doc, 0)


def test_backend_error_propagates_from_translate_document(make_engine) -> None:
    engine = make_engine(FakeBackend(fail_on={"うん"}), start=True)
    with pytest.raises(RuntimeError, match="out of memory"):
        translate_document(engine, Document([text(0, "うん")], format="txt"))


def test_lookup_line_uses_the_same_keys_and_never_submits(make_engine) -> None:
    from asmr_daemon.pipeline import lookup_line

    backend = FakeBackend()
    engine = make_engine(backend, start=True)
    doc = sample()
    assert lookup_line(engine, doc, 3, context_lines=1) is None
    assert backend.calls == [] and engine.stats["waiting"] == 0
    translated = translate_document(engine, doc, context_lines=1)
    assert lookup_line(engine, doc, 3, context_lines=1) == translated[3]
    assert lookup_line(engine, doc, 3) is None  # no context: another key
    assert lookup_line(engine, doc, 0) is None  # verbatim
