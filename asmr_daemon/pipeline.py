"""Documents through the engine: one request per segment, one translation per TEXT line.

A TEXT line's translation is the concatenation of its segments' translations, so outputs
stay line-aligned by construction. All of a document's segments are submitted at once so
the scheduler can batch them. Context (``context_lines > 0``) is the bodies of the preceding
TEXT lines, each with its translation when the memory already knows it; the memory keys on
the context's sources only, so knowing more translations never changes a key.
"""

from __future__ import annotations

import concurrent.futures
import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from asmr_daemon.engine.engine import Engine, Segment
from asmr_daemon.engine.glossary import Glossary
from asmr_daemon.engine.prompts import ContextLine, GlossaryEntry
from asmr_daemon.engine.requests import Priority, Translation
from asmr_daemon.futures import chained
from asmr_daemon.scripts import Document, Line, LineKind

Future = concurrent.futures.Future
# How often a waiting translate_document looks at its cancel event.
_CANCEL_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class LineTranslation:
    index: int
    source: str
    text: str
    problems: tuple[str, ...]


_INDEX_CACHE_SIZE = 4
_index_cache: OrderedDict[int, tuple[Document, int, list[Line], dict[int, int]]] = OrderedDict()
_index_lock = threading.Lock()


def _text_index(doc: Document) -> tuple[list[Line], dict[int, int]]:
    """The document's TEXT lines and each one's position among them. Cached for the last few
    documents: an editor asks for lines of one big document one at a time (hovers, hints, a
    code action over a range), and rebuilding this per line made that quadratic."""
    with _index_lock:
        hit = _index_cache.get(id(doc))
        if hit is not None and hit[0] is doc and hit[1] == len(doc.lines):
            _index_cache.move_to_end(id(doc))
            return hit[2], hit[3]
    lines = [line for line in doc.lines if line.kind is LineKind.TEXT]
    position = {line.index: i for i, line in enumerate(lines)}
    with _index_lock:
        _index_cache[id(doc)] = (doc, len(doc.lines), lines, position)
        while len(_index_cache) > _INDEX_CACHE_SIZE:
            _index_cache.popitem(last=False)
    return lines, position


class _Planner:
    """Context and glossary entries for the segments of one document's TEXT lines."""

    def __init__(self, engine: Engine, doc: Document, glossary: Glossary | None, context_lines: int) -> None:
        self.engine = engine
        self.lines, self.position = _text_index(doc)
        self.glossary = glossary
        self.context_lines = max(0, context_lines)
        self._entries: dict[str, tuple[GlossaryEntry, ...]] = {}

    def entries(self, segment: str) -> tuple[GlossaryEntry, ...]:
        if self.glossary is None:
            return ()
        if segment not in self._entries:
            self._entries[segment] = tuple(self.glossary.find(segment))
        return self._entries[segment]

    def _preceding(self, pos: int) -> list[Line]:
        return self.lines[max(0, pos - self.context_lines):pos] if self.context_lines else []

    def context(self, pos: int) -> tuple[ContextLine, ...]:
        return tuple(ContextLine(line.body, self._known(self.position[line.index]))
                     for line in self._preceding(pos))

    def bare_context(self, pos: int) -> tuple[ContextLine, ...]:
        """The context without translations: enough for memory keys, which hash sources only."""
        return tuple(ContextLine(line.body) for line in self._preceding(pos))

    def _known(self, pos: int) -> str | None:
        """The line's translation if the memory has every segment (with no problem)."""
        bare = self.bare_context(pos)
        parts = []
        for segment in self.lines[pos].segments:
            if not segment.strip():
                parts.append(segment)
                continue
            hit = self.engine.lookup(segment, context=bare, glossary=self.entries(segment))
            if hit is None or hit.problem:
                return None
            parts.append(hit.text)
        return "".join(parts)

    def segments(self, pos: int) -> list[Segment | str]:
        """What to submit for one line; blank segments pass through as plain strings."""
        context = self.context(pos)
        return [segment if not segment.strip() else Segment(segment, context, self.entries(segment))
                for segment in self.lines[pos].segments]

    def submit(self, positions: Sequence[int], priority: Priority) -> list[list[Future[Translation] | str]]:
        """All segments of the given lines in one ``submit_many``, so they can share batches."""
        per_line = [self.segments(pos) for pos in positions]
        futures = iter(self.engine.submit_many([s for line in per_line for s in line if not isinstance(s, str)],
                                               priority=priority))
        return [[s if isinstance(s, str) else next(futures) for s in line] for line in per_line]


def _combine(line: Line, parts: Sequence[Future[Translation] | str]) -> LineTranslation:
    texts, problems = [], []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
            continue
        result = part.result()
        texts.append(result.text)
        if result.problem and result.problem not in problems:
            problems.append(result.problem)
    return LineTranslation(line.index, line.body, "".join(texts), tuple(problems))


def _futures(parts: Sequence[Future[Translation] | str]) -> list[Future[Translation]]:
    return [p for p in parts if not isinstance(p, str)]


def translate_document(engine: Engine, doc: Document, *, priority: Priority = Priority.BATCH,
                       glossary: Glossary | None = None, context_lines: int = 0,
                       progress: Callable[[int, int], None] | None = None,
                       cancel: threading.Event | None = None) -> dict[int, LineTranslation]:
    """Translate every TEXT line; returns ``{line index: LineTranslation}`` (verbatim lines absent).

    ``progress(done, total)`` is called from this thread with the number of finished lines,
    never decreasing, ending with ``(total, total)``. When ``cancel`` is set, every
    outstanding request is cancelled and ``concurrent.futures.CancelledError`` is raised.
    A failing request (backend error) cancels the rest and its exception propagates.
    """
    planner = _Planner(engine, doc, glossary, context_lines)
    if cancel is not None and cancel.is_set():
        raise concurrent.futures.CancelledError()
    submitted = planner.submit(range(len(planner.lines)), priority)
    parts = {line.index: p for line, p in zip(planner.lines, submitted)}
    try:
        _wait_for_lines(parts, progress, cancel)
    except BaseException:
        for p in parts.values():
            for future in _futures(p):
                future.cancel()
        raise
    return {line.index: _combine(line, parts[line.index]) for line in planner.lines}


def _wait_for_lines(parts: dict[int, list[Future[Translation] | str]],
                    progress: Callable[[int, int], None] | None, cancel: threading.Event | None) -> None:
    """Block until every segment is done, reporting finished lines; raise on cancel or error."""
    remaining = {index: len(_futures(p)) for index, p in parts.items()}
    owner = {id(f): index for index, p in parts.items() for f in _futures(p)}
    pending = {f for p in parts.values() for f in _futures(p)}
    done_lines = sum(1 for n in remaining.values() if n == 0)
    if progress is not None:
        progress(done_lines, len(parts))
    while pending:
        if cancel is not None and cancel.is_set():
            raise concurrent.futures.CancelledError()
        finished, pending = concurrent.futures.wait(
            pending, timeout=_CANCEL_POLL_SECONDS if cancel is not None else None,
            return_when=concurrent.futures.FIRST_COMPLETED)
        before = done_lines
        for future in finished:
            if future.cancelled():  # e.g. the engine closed under us
                raise concurrent.futures.CancelledError()
            error = future.exception()
            if error is not None:
                raise error
            index = owner[id(future)]
            remaining[index] -= 1
            done_lines += remaining[index] == 0
        if progress is not None and done_lines > before:
            progress(done_lines, len(parts))


def translate_line(engine: Engine, doc: Document, index: int, *,
                   priority: Priority = Priority.INTERACTIVE, glossary: Glossary | None = None,
                   context_lines: int = 0) -> Future[LineTranslation]:
    """Translate one TEXT line (``Line.index == index``); cancelling the result cancels its requests.

    Raises ValueError when the line does not exist or is verbatim.
    """
    planner = _Planner(engine, doc, glossary, context_lines)
    if index not in planner.position:
        raise ValueError(f"line {index} is not a text line of {doc.source_name}")
    pos = planner.position[index]
    line = planner.lines[pos]
    parts = planner.submit([pos], priority)[0]
    return chained(_futures(parts), functools.partial(_combine, line, parts))


def lookup_line(engine: Engine, doc: Document, index: int, *, glossary: Glossary | None = None,
                context_lines: int = 0) -> LineTranslation | None:
    """The line's translation from memory alone, under the same keys ``translate_line`` uses
    (same context and glossary entries); None unless every segment is known. Never waits for
    the model: meant for hovers and inlay hints.
    """
    planner = _Planner(engine, doc, glossary, context_lines)
    if index not in planner.position:
        return None
    line = planner.lines[planner.position[index]]
    context = planner.bare_context(planner.position[index])
    texts, problems = [], []
    for segment in line.segments:
        if not segment.strip():
            texts.append(segment)
            continue
        hit = engine.lookup(segment, context=context, glossary=planner.entries(segment))
        if hit is None:
            return None
        texts.append(hit.text)
        if hit.problem and hit.problem not in problems:
            problems.append(hit.problem)
    return LineTranslation(line.index, line.body, "".join(texts), tuple(problems))
