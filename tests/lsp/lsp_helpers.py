"""Helpers shared by the language-server tests."""

from __future__ import annotations

from lsprotocol import types
from pytest_lsp import LanguageClient


def open_doc(client: LanguageClient, text: str, name: str = "script.txt", language_id: str = "plaintext") -> str:
    uri = f"file:///tmp/asmr-lsp-test/{name}"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id=language_id, version=1, text=text)
        )
    )
    return uri


async def state(client: LanguageClient) -> dict:
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fake.state"))


def pos(line: int, character: int = 0) -> types.Position:
    return types.Position(line=line, character=character)


def rng(start: int, end: int, end_character: int = 0) -> types.Range:
    return types.Range(start=pos(start), end=pos(end, end_character))
