"""What the language server asks of the engine, in one place.

Every editor request runs at INTERACTIVE priority so it never waits behind a file from the
inbox. Translations go through the same pipeline as the watch folder (``translate_line`` /
``translate_document``), so an editor shows exactly what the outbox file would contain.

``cached`` never blocks: it is called on the event loop for every inlay-hint request and
asks only the translation memory, under the same keys the pipeline uses (``lookup_line``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asmr_daemon.config import Settings
from asmr_daemon.scripts.model import Document

if TYPE_CHECKING:
    from asmr_daemon.engine.engine import Engine
    from asmr_daemon.translate_file import Rendered

GlossaryFor = Callable[[Path | None], Any]
"""Document path (None for unsaved buffers) -> the glossary the pipeline should use, or None."""


@dataclass(frozen=True, slots=True)
class Shown:
    """A translation as the editor shows it."""

    text: str
    problems: tuple[str, ...] = ()


def _mtime(path: Path | None) -> int | None:
    try:
        return path.stat().st_mtime_ns if path is not None else None
    except OSError:
        return None


class ScriptGlossaries:
    """Document path -> the glossary the watch folder uses for a script there (``[prompt] glossary``
    merged with a ``glossary.tsv`` beside it), so an editor shows -- and finds in the memory --
    exactly what the outbox file holds. Re-read when either file changes."""

    def __init__(self, configured: Path | None) -> None:
        self.configured = configured
        self._cache: dict[Path | None, tuple[tuple[int | None, int | None], Any]] = {}
        self._lock = threading.Lock()

    def __call__(self, path: Path | None) -> Any:
        from asmr_daemon.engine.glossary import SCRIPT_GLOSSARY_NAME, Glossary, glossary_for_script

        folder = path.parent if path is not None else None
        stamp = (_mtime(self.configured), _mtime(folder / SCRIPT_GLOSSARY_NAME if folder is not None else None))
        with self._lock:
            hit = self._cache.get(folder)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        if path is not None:
            glossary = glossary_for_script(path, self.configured)
        else:
            glossary = Glossary.load(self.configured) if self.configured is not None else None
        with self._lock:
            self._cache[folder] = (stamp, glossary)
        return glossary


@dataclass
class Translator:
    """Shared by every connection of one endpoint (thread-safe)."""

    engine: Engine
    settings: Settings
    glossary_for: GlossaryFor | None = None
    """Default: ``ScriptGlossaries``, the watch folder's rule."""
    use_adapter: Callable[[Path], str] | None = None
    """Switches the daemon's adapter (and records it in its status); default: the engine's."""

    def __post_init__(self) -> None:
        if self.glossary_for is None:
            self.glossary_for = ScriptGlossaries(self.settings.prompt.glossary)

    def _glossary(self, path: Path | None) -> Any:
        assert self.glossary_for is not None
        return self.glossary_for(path)

    def cached(self, doc: Document, index: int, path: Path | None = None) -> Shown | None:
        """The line's translation if the memory already has it; never blocks, never submits."""
        from asmr_daemon.pipeline import lookup_line

        hit = lookup_line(self.engine, doc, index, glossary=self._glossary(path),
                          context_lines=self.settings.prompt.context_lines)
        return None if hit is None else _shown(hit)

    def line(self, doc: Document, index: int, path: Path | None) -> Future:
        """Translate one line at interactive priority: ``Future[Shown]``.

        Cancelling the returned future cancels the pipeline's future (and so the engine's).
        """
        from asmr_daemon.engine.requests import Priority
        from asmr_daemon.pipeline import translate_line

        inner = translate_line(
            self.engine,
            doc,
            index,
            priority=Priority.INTERACTIVE,
            glossary=self._glossary(path),
            context_lines=self.settings.prompt.context_lines,
        )
        outer: Future = Future()
        def done(f: Future) -> None:
            if f.cancelled():
                outer.cancel()
                return
            if (exc := f.exception()) is not None:
                if outer.set_running_or_notify_cancel():
                    outer.set_exception(exc)
                return
            if outer.set_running_or_notify_cancel():
                outer.set_result(_shown(f.result()))

        def cancel_inner(f: Future) -> None:
            if f.cancelled():
                inner.cancel()

        outer.add_done_callback(cancel_inner)
        inner.add_done_callback(done)
        return outer

    def document(
        self,
        doc: Document,
        path: Path | None,
        *,
        progress: Callable[[int, int], None],
        cancel: threading.Event,
    ) -> dict[int, Shown]:
        """Translate every TEXT line (blocking; run it in a worker thread)."""
        from asmr_daemon.engine.requests import Priority
        from asmr_daemon.pipeline import translate_document

        results = translate_document(
            self.engine,
            doc,
            priority=Priority.INTERACTIVE,
            glossary=self._glossary(path),
            context_lines=self.settings.prompt.context_lines,
            progress=progress,
            cancel=cancel,
        )
        return {index: _shown(lt) for index, lt in results.items()}

    def file_bytes(self, name: str, data: bytes, *, glossary: str | None = None, bilingual: bool = False) -> Rendered:
        """Translate a script given as bytes (``name`` decides its format; ``glossary``: the
        text of a ``glossary.tsv`` beside it) exactly as the watch folder would, at batch
        priority; returns the output's bytes and flags (blocking; run it in a worker thread).

        Least power: a client names no path the daemon would read or write. The script only
        passes through a private temporary folder, whose name never reaches the client.
        """
        import dataclasses
        import tempfile

        from asmr_daemon.engine.glossary import SCRIPT_GLOSSARY_NAME
        from asmr_daemon.errors import AsmrError
        from asmr_daemon.scripts import output_name
        from asmr_daemon.translate_file import render_file

        settings = self.settings
        if bilingual:
            settings = dataclasses.replace(settings, output=dataclasses.replace(settings.output, bilingual=True))
        with tempfile.TemporaryDirectory(prefix="asmr-translate-") as tmp:
            src = Path(tmp) / name
            src.write_bytes(data)
            if glossary:
                (Path(tmp) / SCRIPT_GLOSSARY_NAME).write_text(glossary, encoding="utf-8")
            try:
                return render_file(self.engine, src, settings, dest_name=output_name(name))  # type: ignore[arg-type]
            except AsmrError as exc:  # say "notes.txt: ...", not where it passed through
                exc.message = exc.message.replace(str(src), name).replace(tmp, "")
                raise

    def switch_adapter(self, adapter_dir: Path) -> str:
        """Hot-switch the model's LoRA adapter (blocking while it is read; run it in a worker
        thread). Returns the new identity; AdapterError for an unusable directory."""
        from asmr_daemon.errors import AsmrError

        switch = self.use_adapter or getattr(self.engine, "use_adapter", None)
        if switch is None:
            raise AsmrError("this server cannot switch adapters")
        return switch(adapter_dir)

    def record(self, doc: Document, index: int, target: str) -> None:
        """The user's translation of line ``index`` replaces the model's (kept as a correction)."""
        self.engine.record_correction(doc.lines[index].body, target)


def _shown(lt: Any) -> Shown:
    """A pipeline ``LineTranslation`` -> what the editor shows."""
    problems = getattr(lt, "problems", ()) or ()
    if isinstance(problems, str):
        problems = (problems,)
    return Shown(text=lt.text, problems=tuple(str(getattr(p, "value", p)) for p in problems if p))
