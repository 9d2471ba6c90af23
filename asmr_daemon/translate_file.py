"""One script file -> its translation file: the code path shared by the daemon's watch folder
and the one-shot ``translate`` command (read -> translate line by line -> write atomically).

Imports of the engine stay inside the function: importing this module must not pull in torch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asmr_daemon.output_files import Published
from asmr_daemon.review import Flag, summary

if TYPE_CHECKING:  # pragma: no cover
    from asmr_daemon.config import Settings
    from asmr_daemon.engine.engine import Engine
    from asmr_daemon.engine.requests import Priority


@dataclass(frozen=True, slots=True)
class FileResult:
    """What ``translate_file`` did: where the output went (and why there), its flagged lines and
    the review report listing them (None when nothing was flagged)."""

    published: Published
    flags: tuple[Flag, ...] = ()
    review: Path | None = None

    @property
    def output(self) -> Path:
        return self.published.path

    def as_dict(self) -> dict[str, Any]:
        """JSON for ``asmr.translateFile`` answers; ``translate`` prints it with ``result_lines``."""
        return {"output": str(self.published.path), "wanted": str(self.published.wanted),
                "reason": self.published.reason, "review": str(self.review) if self.review else None,
                "flags": [{"line": f.line, "problem": f.problem, "kept_source": f.kept_source} for f in self.flags]}


def result_lines(src: Path, result: dict[str, Any]) -> list[str]:
    """What ``translate`` prints for one file (``FileResult.as_dict()``, maybe from the daemon)."""
    lines = [f"{src} -> {result['output']}"]
    if result.get("reason"):
        lines.append(f"  not {result['wanted']}: {result['reason']}")
    flags = result.get("flags") or []
    if flags:
        count = len({f["line"] for f in flags})
        lines.append(f"  {count} line{'s' if count != 1 else ''} to review, listed in {result.get('review')}:")
        shown = [Flag(line=int(f["line"]), problem=str(f["problem"]), kept_source=bool(f.get("kept_source")))
                 for f in flags]
        lines.extend(f"    {line}" for line in summary(shown))
    return lines


@dataclass(frozen=True, slots=True)
class Rendered:
    """A translated script before it is written: the output's bytes and its flagged lines."""

    data: bytes
    flags: tuple[Flag, ...] = ()


def translate_file(engine: Engine, src: Path, dest: Path, settings: Settings, *,
                   priority: Priority | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   cancel: threading.Event | None = None, staged: bool = False) -> FileResult:
    """Translate the script ``src`` into the output ``dest`` (written atomically), with its review
    report beside it when a line was flagged.

    ``dest`` is replaced only when it is what asmr-daemon wrote there last; otherwise the output
    goes beside it (``NAME.zh (1).EXT``, see ``output_files``). With ``staged``, ``dest`` is a
    private staging name written as is (review report beside it) for the caller to move into
    place with ``output_files.publish_staged`` (the watch folder records each step). Raises ``InputError`` (with
    ``.code``) when ``src`` is not a readable script; the glossary is ``[prompt] glossary`` merged
    with a ``glossary.tsv`` beside the script.
    """
    from asmr_daemon.output_files import Published, publish_review
    from asmr_daemon.review import report
    from asmr_daemon.scripts.writer import atomic_write_bytes

    src, dest = Path(src), Path(dest)
    rendered = render_file(engine, src, settings, dest_name=dest.name, priority=priority, progress=progress,
                           cancel=cancel)
    if staged:
        review = publish_review(dest, report(src.name, list(rendered.flags)))
        atomic_write_bytes(dest, rendered.data)  # after the review: the caller records the staged file once it exists
        return FileResult(Published(dest, dest), rendered.flags, review)
    return publish_rendered(rendered, src, dest)


def render_file(engine: Engine, src: Path, settings: Settings, *, dest_name: str,
                priority: Priority | None = None,
                progress: Callable[[int, int], None] | None = None,
                cancel: threading.Event | None = None) -> Rendered:
    """Read, translate and encode the script ``src``; nothing is written (``asmr.translateFile``
    sends this back to the ``translate`` command, which publishes it as the user)."""
    from asmr_daemon.engine.glossary import glossary_for_script
    from asmr_daemon.engine.requests import Priority
    from asmr_daemon.pipeline import translate_document
    from asmr_daemon.review import flags_for
    from asmr_daemon.scripts import read_script
    from asmr_daemon.scripts.writer import encode_translation

    doc = read_script(src, max_bytes=settings.watch.max_file_bytes)
    glossary = glossary_for_script(src, settings.prompt.glossary)
    results = translate_document(engine, doc, priority=Priority.BATCH if priority is None else priority,
                                 glossary=glossary, context_lines=settings.prompt.context_lines,
                                 progress=progress, cancel=cancel)
    data = encode_translation(doc, {index: line.text for index, line in results.items()},
                              bilingual=settings.output.bilingual, encoding=settings.output.encoding,
                              newline=settings.output.newline, dest_name=dest_name)
    return Rendered(data, tuple(flags_for(doc, results)))


def publish_rendered(rendered: Rendered, src: Path, dest: Path) -> FileResult:
    """Write a rendered output at ``dest`` (or beside it, see ``output_files``), with its review report."""
    from asmr_daemon.output_files import publish, publish_review, sha256_of
    from asmr_daemon.review import report

    published = publish(rendered.data, dest, source_sha256=sha256_of(src))
    review = publish_review(published.path, report(src.name, list(rendered.flags)))
    return FileResult(published, rendered.flags, review)
