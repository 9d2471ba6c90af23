"""Document features, one module-level handler each, and ``FEATURES``: the table ``build_server``
registers. A handler finds the buffer, converts positions (``convert``), asks the session's
translator and returns LSP types; typed errors become LSP answers in ``server.answering``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lsprotocol import types

from asmr_daemon.lsp import convert, diagnostics
from asmr_daemon.lsp.session import AsmrLanguageServer


@dataclass(frozen=True)
class Feature:
    """One LSP method: its handler, the options it is registered with, and what it answers when
    the script does not parse (a mid-edit subtitle file): ``empty``."""

    method: str
    handler: Callable[..., Any]
    options: Any = None
    empty: Any = None


def did_open(ls: AsmrLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.refresh_diagnostics(params.text_document.uri)


def did_change(ls: AsmrLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.refresh_diagnostics(params.text_document.uri)


def did_close(ls: AsmrLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.forget(params.text_document.uri)
    diagnostics.clear(ls, params.text_document.uri)


async def hover(ls: AsmrLanguageServer, params: types.HoverParams) -> types.Hover | None:
    buffer = await ls.buffer(params.text_document.uri)
    line = convert.checked_line(buffer, params.position)
    if line is None or not convert.is_source_line(buffer.doc, line.index):
        return None
    shown = await ls.translation(buffer, line.index)
    return types.Hover(
        contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=convert.hover_markdown(shown.text, shown.problems)),
        range=convert.line_range(line, ls.codec),
    )


async def inlay_hints(ls: AsmrLanguageServer, params: types.InlayHintParams) -> list[types.InlayHint]:
    """Hints only from memory (never blocks); missing lines are prefetched, then a refresh asked."""
    buffer = await ls.buffer(params.text_document.uri)
    hints, missing = [], []
    for line in convert.lines_in_range(buffer, params.range):
        if not convert.is_source_line(buffer.doc, line.index):
            continue
        shown = ls.translator.cached(buffer.doc, line.index, ls.path_of(buffer))
        if shown is None:
            missing.append(line.index)
            continue
        hints.append(
            types.InlayHint(
                position=convert.end_of_line(line, ls.codec),
                label=shown.text + (" ⚠" if shown.problems else ""),
                padding_left=True,
                tooltip="; ".join(shown.problems) or None,
            )
        )
    if missing:
        ls.prefetch(buffer, missing)
    return hints


async def code_actions(ls: AsmrLanguageServer, params: types.CodeActionParams) -> list[types.CodeAction] | None:
    only = params.context.only
    if only and not any(str(getattr(k, "value", k)) in ("refactor", "refactor.rewrite") for k in only):
        return None
    buffer = await ls.buffer(params.text_document.uri)
    lines = [l for l in convert.lines_in_range(buffer, params.range) if convert.is_source_line(buffer.doc, l.index)]
    if not lines:
        return None
    shown = await ls.translations(buffer, [l.index for l in lines])
    uri, nl, enc = buffer.uri, buffer.doc.newline, ls.codec
    insert = [convert.insert_below_edit(l, shown[l.index].text, nl, enc) for l in lines]
    replace = [convert.replace_edit(l, shown[l.index].text, enc) for l in lines]
    kind = types.CodeActionKind.RefactorRewrite
    return [
        types.CodeAction(title="Insert translation below", kind=kind, edit=convert.workspace_edit(uri, insert)),
        types.CodeAction(title="Replace with translation", kind=kind, edit=convert.workspace_edit(uri, replace)),
    ]


async def completion(ls: AsmrLanguageServer, params: types.CompletionParams) -> types.CompletionList | None:
    """On an empty line below a source line: its translation, laid out as a translation line."""
    buffer = await ls.buffer(params.text_document.uri)
    convert.checked_line(buffer, params.position)
    row = params.position.line
    current = buffer.line(row).raw if row < buffer.line_count else ""
    if row == 0 or current.strip() or not convert.is_source_line(buffer.doc, row - 1):
        return None
    above = buffer.line(row - 1)
    shown = await ls.translation(buffer, above.index)
    new_text = convert.translation_line_text(above, shown.text)
    end = types.Position(line=row, character=convert.units(current, ls.codec))
    item = types.CompletionItem(
        label=shown.text,
        kind=types.CompletionItemKind.Text,
        detail=f"translation of line {row}",
        filter_text=current,
        text_edit=types.TextEdit(range=types.Range(start=types.Position(line=row, character=0), end=end), new_text=new_text),
    )
    return types.CompletionList(is_incomplete=False, items=[item])


async def did_save(ls: AsmrLanguageServer, params: types.DidSaveTextDocumentParams) -> None:
    """A saved bilingual script teaches the memory: every translation line the user changed."""
    buffer = await ls.buffer(params.text_document.uri)
    pairs = [
        (ja, zh)
        for ja, zh in convert.bilingual_pairs(buffer.doc)
        if (model := ls.translator.cached(buffer.doc, ja.index, ls.path_of(buffer))) is None or model.text != zh.body
    ]
    if pairs:
        loop = asyncio.get_running_loop()
        for ja, zh in pairs:  # SQLite writes: off the event loop
            await loop.run_in_executor(None, ls.translator.record, buffer.doc, ja.index, zh.body)


FEATURES: tuple[Feature, ...] = (
    Feature(types.TEXT_DOCUMENT_DID_OPEN, did_open),
    Feature(types.TEXT_DOCUMENT_DID_CHANGE, did_change),
    Feature(types.TEXT_DOCUMENT_DID_CLOSE, did_close),
    Feature(types.TEXT_DOCUMENT_HOVER, hover),
    Feature(types.TEXT_DOCUMENT_INLAY_HINT, inlay_hints, types.InlayHintOptions(resolve_provider=False), empty=[]),
    Feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        code_actions,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.RefactorRewrite]),
    ),
    Feature(types.TEXT_DOCUMENT_COMPLETION, completion, types.CompletionOptions(trigger_characters=[])),
    Feature(types.TEXT_DOCUMENT_DID_SAVE, did_save, types.SaveOptions(include_text=False)),
)
