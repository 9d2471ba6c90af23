"""What the language server asks of the engine, in one place.

Every editor request runs at INTERACTIVE priority so it never waits behind a file from the
inbox. Translations go through the same pipeline as the watch folder (``translate_line`` /
``translate_document``), so an editor shows exactly what the outbox file would contain.

``cached`` never blocks: it is called on the event loop for every inlay-hint request and
asks only the translation memory, under the same keys the pipeline uses (``lookup_line``).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asmr_daemon.config import Settings
from asmr_daemon.engine.glossary import SCRIPT_GLOSSARY_NAME, Glossary, glossary_for_script
from asmr_daemon.engine.requests import Priority
from asmr_daemon.errors import AsmrError
from asmr_daemon.futures import chained
from asmr_daemon.pipeline import lookup_line, translate_document, translate_line
from asmr_daemon.scripts.model import Document

if TYPE_CHECKING:
    from asmr_daemon.engine.engine import Engine
    from asmr_daemon.translate_file import Rendered


@dataclass(frozen=True, slots=True)
class Shown:
    """A translation as the editor shows it."""

    text: str
    problems: tuple[str, ...] = ()


@dataclass
class Translator:
    """Shared by every connection of one endpoint (thread-safe)."""

    engine: Engine
    settings: Settings
    """Replaced by the composition root on reload: every request reads the current ones."""
    use_adapter: Callable[[Path], str] | None = None
    """Switches the daemon's adapter (and records it in its status); default: the engine's."""

    def glossary(self, path: Path | None) -> Glossary | None:
        """The glossary the watch folder would use for the script at ``path``: ``[prompt]
        glossary`` merged with a ``glossary.tsv`` beside it (only the former for unsaved buffers)."""
        return _glossary(self.settings.prompt.glossary, path)

    def cached(self, doc: Document, index: int, path: Path | None = None) -> Shown | None:
        """The line's translation if the memory already has it; never blocks, never submits."""
        hit = lookup_line(self.engine, doc, index, glossary=self.glossary(path),
                          context_lines=self.settings.prompt.context_lines)
        return None if hit is None else _shown(hit)

    def line(self, doc: Document, index: int, path: Path | None) -> Future:
        """Translate one line at interactive priority: ``Future[Shown]``.

        Cancelling the returned future cancels the pipeline's future (and so the engine's).
        """
        inner = translate_line(
            self.engine,
            doc,
            index,
            priority=Priority.INTERACTIVE,
            glossary=self.glossary(path),
            context_lines=self.settings.prompt.context_lines,
        )
        return chained([inner], lambda: _shown(inner.result()))

    def document(
        self,
        doc: Document,
        path: Path | None,
        *,
        progress: Callable[[int, int], None],
        cancel: threading.Event,
    ) -> dict[int, Shown]:
        """Translate every TEXT line (blocking; run it in a worker thread)."""
        results = translate_document(
            self.engine,
            doc,
            priority=Priority.INTERACTIVE,
            glossary=self.glossary(path),
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
        switch = self.use_adapter or getattr(self.engine, "use_adapter", None)
        if switch is None:
            raise AsmrError("this server cannot switch adapters")
        return switch(adapter_dir)

    def record(self, doc: Document, index: int, target: str) -> None:
        """The user's translation of line ``index`` replaces the model's (kept as a correction)."""
        self.engine.record_correction(doc.lines[index].body, target)


class SessionTranslator(Translator):
    """One editor connection's view of the shared translator: its own (fair) share of the
    engine, and always the shared translator's *current* settings and adapter switch (a view,
    not a copy), so a connection opened before a reload (SIGHUP, ``use-adapter``) uses the new
    ones too."""

    def __init__(self, shared: Translator, engine: Engine) -> None:
        self._shared = shared
        self.engine = engine

    @property
    def settings(self) -> Settings:
        return self._shared.settings

    @settings.setter
    def settings(self, value: Settings) -> None:
        self._shared.settings = value

    @property
    def use_adapter(self) -> Callable[[Path], str] | None:
        return self._shared.use_adapter

    @use_adapter.setter
    def use_adapter(self, value: Callable[[Path], str] | None) -> None:
        self._shared.use_adapter = value


def _shown(lt: Any) -> Shown:
    """A pipeline ``LineTranslation`` -> what the editor shows."""
    problems = getattr(lt, "problems", ()) or ()
    if isinstance(problems, str):
        problems = (problems,)
    return Shown(text=lt.text, problems=tuple(str(getattr(p, "value", p)) for p in problems if p))


def _stamp(path: Path | None) -> tuple[int, int] | None:
    try:
        stat = path.stat() if path is not None else None
    except OSError:
        return None
    return None if stat is None else (stat.st_mtime_ns, stat.st_size)


def _glossary(configured: Path | None, script: Path | None) -> Glossary | None:
    """``glossary_for_script``, cached while neither file changes (inlay hints ask per line)."""
    beside = script.parent / SCRIPT_GLOSSARY_NAME if script is not None else None
    return _cached_glossary(configured, script, _stamp(configured), _stamp(beside))


@functools.lru_cache(maxsize=16)
def _cached_glossary(configured: Path | None, script: Path | None, *stamps: object) -> Glossary | None:
    return glossary_for_script(script, configured)
