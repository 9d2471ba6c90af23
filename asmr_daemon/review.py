"""Flagged lines of one output, and the review report ``NAME.zh.EXT.review.txt`` that lists them.

A line is flagged when its translation failed the checks twice (the Japanese source was kept in
the output: leftover kana, repetition, a glossary term not used, U+FFFD...) or when the parser
repaired or skipped something there (``Document.repairs``). The same flags feed the report beside
the output, ``translate``'s summary, ``status`` and the editor's diagnostics, so all of them agree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asmr_daemon.output_files import REVIEW_SUFFIX
from asmr_daemon.scripts.model import Document

KEPT = "the translation failed the checks twice, so the Japanese source was kept"
_HEADER = re.compile(r"^(\d+) lines? to review\b")


@dataclass(frozen=True, slots=True)
class Flag:
    """One problem on one line. ``line`` is 1-based, as editors and users count."""

    line: int
    problem: str
    source: str = ""
    output: str = ""
    kept_source: bool = False

    @property
    def description(self) -> str:
        return f"{self.problem}: {KEPT}" if self.kept_source else self.problem


def flags_for(doc: Document, results: Mapping[int, Any]) -> list[Flag]:
    """Flags from the pipeline's ``{line index: LineTranslation}`` (or the editor's ``Shown``) and
    the parse repairs, by line."""
    flags = [Flag(line=index + 1, problem=problem, source=getattr(lt, "source", None) or doc.lines[index].body,
                  output=lt.text, kept_source=True)
             for index, lt in results.items() for problem in (lt.problems or ())]
    for repair in doc.repairs:
        raw = doc.lines[repair.line - 1].raw if 0 < repair.line <= len(doc.lines) else ""
        flags.append(Flag(line=repair.line, problem=f"{repair.message} ({repair.code})", source=raw))
    return sorted(flags, key=lambda f: f.line)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def report(source: Path | str, flags: Iterable[Flag]) -> str | None:
    """The text of the review report, None when nothing is flagged. It does not name the output
    (which may end up beside a file of yours as ``NAME.zh (1).EXT``): it lies next to it."""
    flags = list(flags)
    if not flags:
        return None
    lines_flagged = len({f.line for f in flags})
    out = [f"{_plural(lines_flagged, 'line')} to review in the translation of {source}",
           "Line numbers are the script's. Correct these lines in the translation next to this report:",
           "asmr-daemon never overwrites a file you changed (translating the script again writes a new copy beside it).",
           ""]
    for flag in flags:
        out.append(f"Line {flag.line}: {flag.description}")
        if flag.source:
            out.append(f"  source: {flag.source}")
        if flag.output and flag.output != flag.source:
            out.append(f"  output: {flag.output}")
        elif flag.kept_source:
            out.append("  output: (the source, unchanged)")
        out.append("")
    return "\n".join(out)


def flagged_count(report_path: Path) -> int | None:
    """How many lines a review report lists (its first line), None if it is not one of ours."""
    try:
        with open(report_path, encoding="utf-8") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError):
        return None
    match = _HEADER.match(first)
    return int(match.group(1)) if match else None


def reports_in(folder: Path) -> list[tuple[Path, int]]:
    """Review reports under ``folder`` (hidden folders skipped) with their flagged-line counts,
    newest first: what ``status`` shows about outputs that need the user's attention."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.endswith(REVIEW_SUFFIX) and not name.startswith("."):
                path = Path(root) / name
                count = flagged_count(path)
                if count is not None:
                    found.append((path, count))
    return sorted(found, key=lambda item: _mtime(item[0]), reverse=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def summary(flags: Iterable[Flag], limit: int = 10) -> list[str]:
    """Short lines for a terminal: ``line 4: glossary term お兄ちゃん not used (source kept)``."""
    flags = list(flags)
    shown = [f"line {f.line}: {f.problem}" + (" (source kept)" if f.kept_source else "") for f in flags[:limit]]
    if len(flags) > limit:
        shown.append(f"... and {len(flags) - limit} more")
    return shown
