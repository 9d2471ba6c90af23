"""Text -> Document for txt, srt, vtt and lrc, and Document -> text again.

Every parser keeps each physical line as one ``Line`` with its raw text, so rendering with no
translations gives back the input exactly (same lines, newline style and final newline; a
file with mixed line endings comes back with its dominant one). Structure (cue numbers,
timings, headers, NOTE blocks, lrc tags) is VERBATIM; only dialogue text can be TEXT, and the
classification rule in ``classify`` decides whether it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import PurePath

from asmr_daemon.errors import MalformedScriptError
from asmr_daemon.scripts.classify import classify, split_padding
from asmr_daemon.scripts.decoding import detect_newline
from asmr_daemon.scripts.model import Document, Line, LineKind
from asmr_daemon.scripts.segment import Segmenter, get_segmenter

FORMATS = ("txt", "srt", "vtt", "lrc")
_NEWLINE_RE = re.compile(r"\r\n|\r|\n")
# Characters that would break line alignment if a translation carried them into the output.
_LINE_BREAKS_RE = re.compile(r"\r\n|[\r\n\u2028\u2029\x85\x0b\x0c]")

_SRT_TIME = r"(\d{1,3}):(\d{2}):(\d{2}),(\d{3})"
_SRT_TIMING_RE = re.compile(rf"^\s*{_SRT_TIME}[ \t]*-->[ \t]*{_SRT_TIME}(?:[ \t]+\S.*)?\s*$")
_VTT_TIME = r"(?:(\d{2,}):)?(\d{2}):(\d{2})\.(\d{3})"
_VTT_TIMING_RE = re.compile(rf"^{_VTT_TIME}[ \t]+-->[ \t]+{_VTT_TIME}(?:[ \t]+\S.*)?\s*$")
_VTT_BLOCK_RE = re.compile(r"^(NOTE|STYLE|REGION)(?:[ \t].*)?$")
_LRC_TAGS_RE = re.compile(r"^(\s*(?:\[\d{1,3}:\d{1,2}(?:[.:]\d{1,3})?\]\s*)+)(.*)$")
_LRC_META_RE = re.compile(r"^\s*\[[A-Za-z#][A-Za-z0-9_#-]*:[^\]]*\]\s*$")

_SRT_HINT = "SRT cues are: a number, a timing line like 00:00:01,000 --> 00:00:04,500, the text, a blank line"
_VTT_HINT = "WebVTT cues need a timing line like 00:00:01.000 --> 00:00:04.500 (hours optional)"


def format_for_path(path: str | PurePath) -> str:
    """``"txt"``, ``"srt"``, ``"vtt"`` or ``"lrc"`` from the extension; anything else is text."""
    suffix = PurePath(path).suffix.lower().lstrip(".")
    return suffix if suffix in FORMATS else "txt"


def split_lines(text: str) -> tuple[list[str], bool]:
    """Lines without their endings, and whether the text ended with a newline.

    Only CR, LF and CRLF end lines (``str.splitlines`` also splits on form feeds and U+2028,
    which editors and the line count users see do not).
    """
    lines = _NEWLINE_RE.split(text)
    final_newline = len(lines) > 1 and lines[-1] == ""
    if final_newline or lines == [""]:
        lines.pop()
    return lines, final_newline


def parse_text(
    text: str, fmt: str, *, source_name: str = "<text>", segmenter: Segmenter | None = None
) -> Document:
    """Parse decoded script text. ``segmenter`` defaults to the shared one (``get_segmenter``)."""
    parsers: dict[str, Callable[[list[str], str], list[tuple[LineKind, str]]]] = {
        "txt": _kinds_txt,
        "srt": _kinds_srt,
        "vtt": _kinds_vtt,
        "lrc": _kinds_lrc,
    }
    if fmt not in parsers:
        raise ValueError(f"unknown script format {fmt!r}; expected one of {', '.join(FORMATS)}")
    seg = segmenter or get_segmenter()
    raws, final_newline = split_lines(text)
    kinds = parsers[fmt](raws, source_name)
    lines = [
        _make_line(i, raw, kind, prefix, seg)
        for i, (raw, (kind, prefix)) in enumerate(zip(raws, kinds, strict=True))
    ]
    return Document(
        lines=lines,
        format=fmt,
        newline=detect_newline(text),
        source_name=source_name,
        final_newline=final_newline,
    )


def _make_line(index: int, raw: str, kind: LineKind, prefix: str, seg: Segmenter) -> Line:
    """Build a Line; ``prefix`` is the verbatim head a parser already cut off (lrc tags)."""
    if kind is LineKind.VERBATIM:
        return Line(index=index, raw=raw, kind=kind)
    rest = raw[len(prefix) :]
    if classify(rest) is LineKind.VERBATIM:
        return Line(index=index, raw=raw, kind=LineKind.VERBATIM)
    lead, body, suffix = split_padding(rest)
    return Line(
        index=index,
        raw=raw,
        kind=LineKind.TEXT,
        prefix=prefix + lead,
        body=body,
        suffix=suffix,
        segments=tuple(seg.split(body)),
    )


# Each format parser returns, per line, VERBATIM or "candidate TEXT" plus its verbatim prefix;
# candidates are then put through the classification rule.
_V = (LineKind.VERBATIM, "")
_T = (LineKind.TEXT, "")


def _kinds_txt(lines: list[str], source_name: str) -> list[tuple[LineKind, str]]:
    return [_T] * len(lines)


def _malformed(source_name: str, lineno: int, problem: str, raw: str, hint: str) -> MalformedScriptError:
    return MalformedScriptError(f"{source_name}: line {lineno}: {problem}: {raw.strip()!r}", hint)


def _srt_timing_ok(raw: str) -> bool:
    m = _SRT_TIMING_RE.match(raw)
    return m is not None and all(int(m.group(k)) < 60 for k in (2, 3, 6, 7))


def _kinds_srt(lines: list[str], source_name: str) -> list[tuple[LineKind, str]]:
    kinds: list[tuple[LineKind, str]] = []
    in_cue = False  # between a timing line and the blank line that ends the cue
    expect_timing = False
    seen_cue = False
    for n, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        if expect_timing:
            if not _srt_timing_ok(raw):
                problem = "bad SRT timing line" if "-->" in raw else "cue number without a timing line"
                raise _malformed(source_name, n, problem, raw, _SRT_HINT)
            kinds.append(_V)
            expect_timing, in_cue = False, True
        elif not stripped:
            kinds.append(_V)
            in_cue = False
        elif in_cue:
            kinds.append(_T)
        elif "-->" in raw:  # a cue without a number is tolerated; a bad timing is not
            if not _srt_timing_ok(raw):
                raise _malformed(source_name, n, "bad SRT timing line", raw, _SRT_HINT)
            kinds.append(_V)
            in_cue = seen_cue = True
        elif stripped.isdigit():
            kinds.append(_V)
            expect_timing = seen_cue = True
        elif seen_cue:
            # Text after a blank line inside a cue (some tools write paragraph breaks).
            kinds.append(_T)
            in_cue = True
        else:
            raise _malformed(source_name, n, "expected a cue number or timing line", raw, _SRT_HINT)
    if expect_timing:
        raise _malformed(source_name, len(lines) + 1, "cue number without a timing line", "", _SRT_HINT)
    return kinds


def _vtt_timing_ok(raw: str) -> bool:
    m = _VTT_TIMING_RE.match(raw)
    return m is not None and all(int(m.group(k)) < 60 for k in (2, 3, 6, 7))


def _kinds_vtt(lines: list[str], source_name: str) -> list[tuple[LineKind, str]]:
    first = lines[0] if lines else ""
    if not (first.startswith("WEBVTT") and first[6:7] in ("", " ", "\t")):
        hint = 'put "WEBVTT" on the first line'
        raise _malformed(source_name, 1, "a WebVTT file must start with WEBVTT", first, hint)
    kinds: list[tuple[LineKind, str]] = [_V]
    block = "header"  # header | skip (NOTE/STYLE/REGION) | start | ident | cue
    for n, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            kinds.append(_V)
            if block == "ident":
                raise _malformed(source_name, n, "cue identifier without a timing line", lines[n - 2], _VTT_HINT)
            block = "start"
            continue
        if block in ("header", "skip"):
            kinds.append(_V)
        elif block == "cue":
            kinds.append(_T)
        elif block == "start" and _VTT_BLOCK_RE.match(raw):
            kinds.append(_V)
            block = "skip"
        elif "-->" in raw:
            if not _vtt_timing_ok(raw):
                raise _malformed(source_name, n, "bad WebVTT timing line", raw, _VTT_HINT)
            kinds.append(_V)
            block = "cue"
        elif block == "start":
            kinds.append(_V)  # cue identifier
            block = "ident"
        else:  # a second line after an identifier that is not a timing
            raise _malformed(source_name, n, "cue identifier without a timing line", raw, _VTT_HINT)
    if block == "ident":
        raise _malformed(source_name, len(lines) + 1, "cue identifier without a timing line", "", _VTT_HINT)
    return kinds


def _kinds_lrc(lines: list[str], source_name: str) -> list[tuple[LineKind, str]]:
    kinds: list[tuple[LineKind, str]] = []
    for raw in lines:
        if _LRC_META_RE.match(raw):
            kinds.append(_V)  # [ti:...], [ar:...], [offset:...]
        elif m := _LRC_TAGS_RE.match(raw):
            kinds.append((LineKind.TEXT, m.group(1)))
        else:
            kinds.append(_T)
    return kinds


def clean_translation(text: str) -> str:
    """A translation on one line: any line break becomes a space.

    One output line per input line is the whole contract of the writer; a model that answers
    with two lines must not shift every following line.
    """
    return _LINE_BREAKS_RE.sub(" ", text)


def render_lines(doc: Document, translations: Mapping[int, str], *, bilingual: bool = False) -> list[str]:
    """The output lines (no endings). Missing translations keep the source body."""
    if bilingual and doc.format != "txt":
        raise ValueError(f"bilingual output is only supported for txt scripts, not {doc.format}")
    out: list[str] = []
    for line in doc.lines:
        if line.kind is not LineKind.TEXT:
            out.append(line.raw)
            continue
        body = clean_translation(translations[line.index]) if line.index in translations else line.body
        if bilingual:
            out.append(line.raw)
            out.append(line.prefix + body)
        else:
            out.append(line.prefix + body + line.suffix)
    return out


def render(
    doc: Document, translations: Mapping[int, str], *, bilingual: bool = False, newline: str | None = None
) -> str:
    """The translated script as text, with ``newline`` (default: the document's own style).

    Same line count as the source (twice the TEXT lines more when ``bilingual``: each TEXT line
    is followed by its translation with the same indentation; txt only).
    """
    nl = doc.newline if newline is None else newline
    lines = render_lines(doc, translations, bilingual=bilingual)
    text = nl.join(lines)
    return text + nl if doc.final_newline and lines else text
