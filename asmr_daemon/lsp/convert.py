"""Conversions between editor buffers, script ``Document``s and LSP types.

Pure functions only: no engine, no server. Lines are split the way the LSP specification
(and ``parse_text``) split them -- on CR, LF and CRLF only -- so line N of the ``Document`` is
line N in the editor. (pygls' own ``TextDocument.lines`` also splits on U+2028 and form feeds,
which would shift every following line.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

# Which lines are Japanese sources and which their translations: shared with ``import-pairs``.
from asmr_daemon.scripts.bilingual import (  # noqa: F401
    bilingual_pairs,
    has_kana,
    is_source_line,
    is_translation_line,
)
from asmr_daemon.scripts.formats import (
    clean_translation,
    format_for_path,
    parse_text,
    split_lines,
)
from asmr_daemon.scripts.model import Document, Line

# Editor language ids that name a subtitle format (VS Code / Neovim filetypes).
_LANGUAGE_FORMATS = {"srt": "srt", "subrip": "srt", "vtt": "vtt", "webvtt": "vtt", "lrc": "lrc"}
_HAN_RE = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


class BadRequest(ValueError):
    """A request names something that does not exist (uri, line); answered as InvalidParams."""


@dataclass(frozen=True, slots=True)
class ParsedBuffer:
    """An editor buffer parsed as a script, with what is needed to map back to positions."""

    uri: str
    version: int | None
    text: str
    doc: Document

    @property
    def line_count(self) -> int:
        return len(self.doc.lines)

    def line(self, index: int) -> Line:
        return self.doc.lines[index]


def uri_path(uri: str) -> str:
    """The path part of a document uri (``file:///a/b.srt`` -> ``/a/b.srt``); BadRequest if not a uri."""
    if not isinstance(uri, str) or not uri:
        raise BadRequest(f"not a document uri: {uri!r}")
    parsed = urlparse(uri)
    if not parsed.scheme or len(parsed.scheme) == 1:  # "c:/x" is a Windows path, not a uri
        raise BadRequest(f"not a document uri: {uri!r}")
    return unquote(parsed.path or parsed.netloc or "")


def format_for(uri: str, language_id: str | None = None) -> str:
    """The script format of a buffer: its language id when that names one, else its extension."""
    if language_id and language_id.lower() in _LANGUAGE_FORMATS:
        return _LANGUAGE_FORMATS[language_id.lower()]
    return format_for_path(PurePosixPath(uri_path(uri)).name or "untitled.txt")


def parse_buffer(uri: str, text: str, *, version: int | None = None, language_id: str | None = None) -> ParsedBuffer:
    """Parse a buffer exactly like the watch folder parses a file (same parser, same classifier).

    Raises ``MalformedScriptError`` for a subtitle file that does not parse (e.g. mid-edit).
    """
    doc = parse_text(text, format_for(uri, language_id), source_name=PurePosixPath(uri_path(uri)).name or uri)
    return ParsedBuffer(uri=uri, version=version, text=text, doc=doc)


# -- positions ------------------------------------------------------------------------------


UTF16 = PositionCodec(types.PositionEncodingKind.Utf16)  # what LSP assumes unless both sides agree otherwise


def units(text: str, codec: PositionCodec = UTF16) -> int:
    """Length of ``text`` in the negotiated position encoding's code units."""
    return codec.client_num_units(text)


def line_range(line: Line, codec: PositionCodec = UTF16) -> types.Range:
    """The whole line, without its line ending."""
    return types.Range(
        start=types.Position(line=line.index, character=0),
        end=types.Position(line=line.index, character=units(line.raw, codec)),
    )


def end_of_line(line: Line, codec: PositionCodec = UTF16) -> types.Position:
    return types.Position(line=line.index, character=units(line.raw, codec))


def whole_buffer_range(text: str, codec: PositionCodec = UTF16) -> types.Range:
    """From the start to the very end of ``text`` (after a final newline, if any)."""
    lines, final_newline = split_lines(text)
    if final_newline or not lines:
        end = types.Position(line=len(lines), character=0)
    else:
        end = types.Position(line=len(lines) - 1, character=units(lines[-1], codec))
    return types.Range(start=types.Position(line=0, character=0), end=end)


def checked_line(buffer: ParsedBuffer, position: types.Position) -> Line | None:
    """The line under ``position``; None just past the last line (editors put the cursor there
    after a final newline); BadRequest beyond that."""
    if position.line < 0 or position.character < 0:
        raise BadRequest(f"position {position.line}:{position.character} is negative")
    if position.line == buffer.line_count:
        return None
    if position.line > buffer.line_count:
        raise BadRequest(f"line {position.line} is out of range: {buffer.uri} has {buffer.line_count} lines")
    return buffer.line(position.line)


def lines_in_range(buffer: ParsedBuffer, rng: types.Range) -> list[Line]:
    """The lines a selection touches (a selection ending at column 0 does not include that line)."""
    if rng.start.line < 0 or rng.end.line < rng.start.line:
        raise BadRequest(f"invalid range {rng.start.line}..{rng.end.line}")
    last = rng.end.line
    if last > rng.start.line and rng.end.character == 0:
        last -= 1
    if rng.start.line > buffer.line_count:
        raise BadRequest(f"line {rng.start.line} is out of range: {buffer.uri} has {buffer.line_count} lines")
    return buffer.doc.lines[rng.start.line : min(last, buffer.line_count - 1) + 1]


# -- rendering -------------------------------------------------------------------------------


def hover_markdown(text: str, problems: Iterable[Any] = ()) -> str:
    """The hover body: the translation, then one ``⚠`` line per problem the checks flagged."""
    parts = [_escape_markdown(text)]
    parts += [f"⚠ {_escape_markdown(str(getattr(p, 'value', p)))}" for p in problems]
    return "\n\n".join(parts)


def _escape_markdown(text: str) -> str:
    # Only what would change how a translation is shown (emphasis, code, links, html); every
    # escape is visible in clients that show the markdown source (Neovim's hover window).
    return re.sub(r"([\\`*_\[\]<>])", r"\\\1", text)


def translation_line_text(line: Line, translation: str) -> str:
    """The translation as a line of its own under ``line``: same indentation / lrc tags."""
    return line.prefix + clean_translation(translation)


def replaced_line_text(line: Line, translation: str) -> str:
    return line.prefix + clean_translation(translation) + line.suffix


def bilingual_lines(doc: Document, translations: Mapping[int, str]) -> list[str]:
    """Each TEXT line followed by its translation line (lines without a translation stay alone).

    Lines that already are translations (a bilingual document translated again) are kept and
    their Japanese line gets no second translation.
    """
    out: list[str] = []
    for line in doc.lines:
        out.append(line.raw)
        if line.index in translations and is_source_line(doc, line.index):
            nxt = line.index + 1
            if nxt < len(doc.lines) and is_translation_line(doc, nxt):
                continue
            out.append(translation_line_text(line, translations[line.index]))
    return out


def replaced_lines(doc: Document, translations: Mapping[int, str]) -> list[str]:
    return [
        replaced_line_text(line, translations[line.index]) if line.index in translations else line.raw
        for line in doc.lines
    ]


def join_lines(doc: Document, lines: Sequence[str]) -> str:
    text = doc.newline.join(lines)
    return text + doc.newline if doc.final_newline and lines else text


# -- edits -----------------------------------------------------------------------------------


def insert_below_edit(line: Line, translation: str, newline: str, codec: PositionCodec) -> types.TextEdit:
    """Insert the translation as a new line right after ``line``."""
    end = end_of_line(line, codec)
    return types.TextEdit(range=types.Range(start=end, end=end), new_text=newline + translation_line_text(line, translation))


def replace_edit(line: Line, translation: str, codec: PositionCodec) -> types.TextEdit:
    return types.TextEdit(range=line_range(line, codec), new_text=replaced_line_text(line, translation))


def workspace_edit(uri: str, edits: list[types.TextEdit]) -> types.WorkspaceEdit:
    return types.WorkspaceEdit(changes={uri: edits})
