"""Bilingual layout: a Japanese line followed by its Chinese translation line.

Shared by the language server (``didSave`` records such pairs as corrections, hints skip the
translation lines) and ``import-pairs`` (such a script becomes training data). Chinese has no
kana; nearly every Japanese dialogue line has some, which is what tells them apart.
"""

from __future__ import annotations

from asmr_daemon.scripts.kana import has_kana
from asmr_daemon.scripts.model import Document, Line, LineKind

__all__ = ["bilingual_pairs", "has_kana", "is_source_line", "is_translation_line", "unpaired_sources"]


def is_translation_line(doc: Document, index: int) -> bool:
    """A line right under a Japanese TEXT line that has no kana: a translation (bilingual layout).

    Such lines are not sent to the translator again (no hints, no hover) and are what ``didSave``
    records as corrections.
    """
    if index <= 0 or index >= len(doc.lines):
        return False
    line, above = doc.lines[index], doc.lines[index - 1]
    return (
        line.kind is LineKind.TEXT
        and not has_kana(line.body)
        and above.kind is LineKind.TEXT
        and has_kana(above.body)
    )


def is_source_line(doc: Document, index: int) -> bool:
    """A TEXT line that is to be translated (not itself the translation of the line above)."""
    return doc.lines[index].kind is LineKind.TEXT and not is_translation_line(doc, index)


def bilingual_pairs(doc: Document) -> list[tuple[Line, Line]]:
    """``(japanese_line, chinese_line)`` for each translation line of a bilingual document."""
    return [(doc.lines[i - 1], doc.lines[i]) for i in range(1, len(doc.lines)) if is_translation_line(doc, i)]


def unpaired_sources(doc: Document) -> list[Line]:
    """Japanese TEXT lines (with kana) that have no translation line under them."""
    return [
        line
        for line in doc.lines
        if line.kind is LineKind.TEXT and has_kana(line.body) and not is_translation_line(doc, line.index + 1)
    ]
