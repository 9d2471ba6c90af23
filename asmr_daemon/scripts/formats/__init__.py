"""Text -> Document for every format, and Document -> text again.

Structure first, text last: the format's parser (``srt``, ``vtt``, ``lrc``, ``ass``) marks every
structural line (cue numbers, timings, headers, blocks, metadata, fields) before anything is
called dialogue; then ``markup`` cuts inline tags off the dialogue, and the words/sounds rule
(``classify``) decides what is left. Every physical line stays one ``Line`` with its raw
text, so rendering with no translations gives back the input exactly (same lines, newline
style -- each line's own when the file mixed them -- and final newline).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import PurePath

from asmr_daemon.scripts.classify import decide
from asmr_daemon.scripts.decoding import detect_newline
from asmr_daemon.scripts.formats import ass, lrc, srt, vtt
from asmr_daemon.scripts.formats.common import Cand, Parsed, line_endings, split_lines
from asmr_daemon.scripts.formats.markup import split_markup
from asmr_daemon.scripts.model import Document, Line, LineKind
from asmr_daemon.scripts.segment import Segmenter, get_segmenter

__all__ = ["DOCUMENT_FORMATS", "FORMATS", "clean_translation", "format_for_path", "parse_text", "render",
           "render_lines", "split_lines"]

# Documents are read into plain text lines (scripts.documents) and written as NAME.zh.txt.
DOCUMENT_FORMATS = ("docx", "pdf")
FORMATS = ("txt", "srt", "vtt", "lrc", "ass", *DOCUMENT_FORMATS)
_EXTENSIONS = {"txt": "txt", "srt": "srt", "vtt": "vtt", "lrc": "lrc", "ass": "ass", "ssa": "ass",
               "docx": "docx", "pdf": "pdf"}
_TEXT_LIKE = ("txt", *DOCUMENT_FORMATS)
# Characters that would break line alignment if a translation carried them into the output.
_LINE_BREAKS_RE = re.compile(r"\r\n|[\r\n\u2028\u2029\x85\x0b\x0c]")


def _parse_txt(lines: list[str], source_name: str) -> Parsed:
    return Parsed([Cand(True, "words")] * len(lines), [])


_PARSERS: dict[str, Callable[[list[str], str], Parsed]] = {
    "txt": _parse_txt, "srt": srt.parse, "vtt": vtt.parse, "lrc": lrc.parse, "ass": ass.parse,
}


def format_for_path(path: str | PurePath) -> str:
    """The format from the extension (``.ssa`` is ``ass``); any other extension is text."""
    suffix = PurePath(path).suffix.lower().lstrip(".")
    return _EXTENSIONS.get(suffix, "txt")


def parse_text(
    text: str, fmt: str, *, source_name: str = "<text>", segmenter: Segmenter | None = None
) -> Document:
    """Parse decoded script text. ``segmenter`` defaults to the shared one (``get_segmenter``).

    Raises ``MalformedScriptError`` when the file is broken beyond what a player repairs; what
    was repaired or skipped instead is in ``Document.repairs``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown script format {fmt!r}; expected one of {', '.join(FORMATS)}")
    seg = segmenter or get_segmenter()
    raws, final_newline = split_lines(text)
    parsed = _PARSERS["txt" if fmt in _TEXT_LIKE else fmt](raws, source_name)
    markup = "txt" if fmt in _TEXT_LIKE else fmt
    lines = [_make_line(i, raw, cand, markup, seg) for i, (raw, cand) in enumerate(zip(raws, parsed.cands, strict=True))]
    return Document(
        lines=lines,
        format=fmt,
        newline=detect_newline(text),
        source_name=source_name,
        final_newline=final_newline,
        repairs=parsed.repairs,
        line_endings=line_endings(text),
    )


def _make_line(index: int, raw: str, cand: Cand, fmt: str, seg: Segmenter) -> Line:
    if not cand.dialogue:
        return Line(index=index, raw=raw, kind=LineKind.VERBATIM, reason=cand.reason)
    split = split_markup(raw[len(cand.head) :], fmt)
    kind, reason = decide(split.words)
    if kind is LineKind.VERBATIM:
        if reason == "blank" and split.prefix.strip():
            reason = "markup only"
        return Line(index=index, raw=raw, kind=kind, reason=reason)
    return Line(
        index=index,
        raw=raw,
        kind=LineKind.TEXT,
        prefix=cand.head + split.prefix,
        body=split.words,
        suffix=split.suffix,
        segments=tuple(seg.split(split.words)),
        reason=reason,
        dropped=split.dropped,
    )


def clean_translation(text: str) -> str:
    """A translation on one line: any line break becomes a space.

    One output line per input line is the whole contract of the writer; a model that answers
    with two lines must not shift every following line.
    """
    return _LINE_BREAKS_RE.sub(" ", text)


def render_lines(doc: Document, translations: Mapping[int, str], *, bilingual: bool = False) -> list[str]:
    """The output lines (no endings). A line without a translation is its source, unchanged."""
    if bilingual and doc.format not in _TEXT_LIKE:
        raise ValueError(f"bilingual output is only supported for txt scripts, not {doc.format}")
    out: list[str] = []
    for line in doc.lines:
        if line.kind is not LineKind.TEXT or line.index not in translations:
            out.append(line.raw)
            if bilingual and line.kind is LineKind.TEXT:
                out.append(line.prefix + line.body)
            continue
        body = clean_translation(translations[line.index])
        if bilingual:
            out.append(line.raw)
            out.append(line.prefix + body)
        else:
            out.append(line.prefix + body + line.suffix)
    return out


def render(
    doc: Document, translations: Mapping[int, str], *, bilingual: bool = False, newline: str | None = None
) -> str:
    """The translated script as text, with ``newline`` (default: the document's own endings).

    Same line count as the source (twice the TEXT lines more when ``bilingual``: each TEXT line
    is followed by its translation with the same indentation; txt only).
    """
    lines = render_lines(doc, translations, bilingual=bilingual)
    if newline is None and doc.line_endings and not bilingual:
        return "".join(line + end for line, end in zip(lines, doc.line_endings, strict=True))
    nl = doc.newline if newline is None else newline
    text = nl.join(lines)
    return text + nl if doc.final_newline and lines else text
