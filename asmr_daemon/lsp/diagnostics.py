"""An open buffer's flagged lines as LSP diagnostics: the same flags as the review report beside an
output (``review.flags_for``), shown as warnings on their lines.

Only what is already known is shown: a line's translation from the translation memory (never the
model: computing diagnostics must not queue a whole file at interactive priority) and the parse
repairs. So a script the daemon has translated shows its flagged lines as soon as it is opened, and
a line translated later (hover, a prefetch for inlay hints, the whole-document command) gets its
diagnostic when its translation arrives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

from asmr_daemon.lsp import convert
from asmr_daemon.lsp.convert import ParsedBuffer
from asmr_daemon.review import Flag, flags_for

SOURCE = "asmr-daemon"


def buffer_flags(buffer: ParsedBuffer, translator: Any, path: Path | None) -> list[Flag]:
    """Flags for the buffer from memory alone (blocking: SQLite and the glossary matcher)."""
    known = {}
    for line in buffer.doc.text_lines:
        shown = translator.cached(buffer.doc, line.index, path)
        if shown is not None and shown.problems:
            known[line.index] = shown
    return flags_for(buffer.doc, known)


def to_diagnostics(buffer: ParsedBuffer, flags: list[Flag], codec: PositionCodec) -> list[types.Diagnostic]:
    """One warning per flag, over its whole line."""
    out = []
    for flag in flags:
        if not 0 < flag.line <= buffer.line_count:
            continue
        out.append(types.Diagnostic(
            range=convert.line_range(buffer.line(flag.line - 1), codec),
            message=flag.description,
            severity=types.DiagnosticSeverity.Warning,
            source=SOURCE,
        ))
    return out


def publish_params(buffer: ParsedBuffer, flags: list[Flag], codec: PositionCodec) -> types.PublishDiagnosticsParams:
    return types.PublishDiagnosticsParams(uri=buffer.uri, version=buffer.version,
                                          diagnostics=to_diagnostics(buffer, flags, codec))


# Typing fires a didChange per key: wait this long for the next one before looking up the lines.
DELAY_SECONDS = 0.2


async def publish_later(ls: Any, uri: str, delay: float = DELAY_SECONDS) -> None:
    """Publish the buffer's diagnostics after ``delay`` (a newer call cancels this one). Nothing is
    sent when the buffer changed meanwhile (its own refresh follows) or does not parse."""
    import asyncio

    from asmr_daemon.errors import InputError

    await asyncio.sleep(delay)
    try:
        buffer = await ls.buffer(uri)
    except (InputError, ValueError):  # mid-edit subtitle file, or closed meanwhile
        return
    flags = await asyncio.get_running_loop().run_in_executor(
        None, buffer_flags, buffer, ls.translator, ls.path_of(buffer))
    current = ls.workspace.text_documents.get(unquote(uri))
    if current is None or current.version != buffer.version:
        return
    ls.text_document_publish_diagnostics(publish_params(buffer, flags, ls.codec))


def clear(ls: Any, uri: str) -> None:
    """A closed document has no diagnostics (the editor keeps the last ones otherwise)."""
    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
