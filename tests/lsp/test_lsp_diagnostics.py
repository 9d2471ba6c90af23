"""Flagged lines as diagnostics (fake engine): warnings on exactly the lines whose translation was
flagged, published on open, updated when the document changes, cleared on close."""

from __future__ import annotations

import asyncio

from lsp_helpers import open_doc, pos
from lsprotocol import types

SCRIPT = "【トラック1　耳かき】\nおはようございます\n問題のある行です\n……\n問題のある行です\n"
KEPT = "leftover kana: the translation failed the checks twice, so the Japanese source was kept"


async def next_diagnostics(client, uri: str) -> list[types.Diagnostic]:
    while True:
        params = await asyncio.wait_for(client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS), 30)
        if params.uri == uri:
            return list(params.diagnostics)


async def remember(client, *sources: str) -> None:
    await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fake.remember", arguments=list(sources)))


async def test_flagged_lines_known_to_the_memory_are_warnings_when_the_document_opens(client):
    await remember(client, "おはようございます", "問題のある行です")
    uri = open_doc(client, SCRIPT)
    diagnostics = await next_diagnostics(client, uri)
    assert [(d.range, d.severity, d.source, d.message) for d in diagnostics] == [
        (types.Range(start=pos(2, 0), end=pos(2, 8)), types.DiagnosticSeverity.Warning, "asmr-daemon", KEPT),
        (types.Range(start=pos(4, 0), end=pos(4, 8)), types.DiagnosticSeverity.Warning, "asmr-daemon", KEPT),
    ]

    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text="問題のある行です\nおはようございます\n")]))
    diagnostics = await next_diagnostics(client, uri)
    assert [(d.range.start.line, d.message) for d in diagnostics] == [(0, KEPT)]

    client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))
    assert await next_diagnostics(client, uri) == []


async def test_a_line_flagged_on_hover_gets_its_warning(client):
    uri = open_doc(client, "おはようございます\n問題のある行です\n", name="hover.txt")
    assert await next_diagnostics(client, uri) == []  # nothing known yet
    await client.text_document_hover_async(
        types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=pos(1, 0)))
    diagnostics = await next_diagnostics(client, uri)
    assert [(d.range.start.line, d.message) for d in diagnostics] == [(1, KEPT)]
