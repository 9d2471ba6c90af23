"""Inlay hints, code actions and completion: whole responses compared."""

from __future__ import annotations

import asyncio

from lsp_helpers import open_doc, pos, rng, state
from lsprotocol import types

SCRIPT = "【トラック1　耳かき】\n  おはようございます\n……\n耳かきしますね\n\n"


def doc_id(uri):
    return types.TextDocumentIdentifier(uri=uri)


async def test_inlay_hints_only_from_memory_then_refresh(client):
    uri = open_doc(client, SCRIPT)
    params = types.InlayHintParams(text_document=doc_id(uri), range=rng(0, 5))
    assert list(await client.text_document_inlay_hint_async(params)) == []  # nothing known yet: no waiting
    await asyncio.wait_for(client.editor.refreshes.get(), 10)  # background translations arrived
    hints = await client.text_document_inlay_hint_async(params)
    assert [(h.position, h.label) for h in hints] == [
        (pos(0, 11), "【音轨1 掏耳朵】"),
        (pos(1, 11), "早上好"),
        (pos(3, 7), "我来给你掏耳朵哦"),
    ]
    assert all(h.padding_left for h in hints)
    submitted = (await state(client))["submitted"]
    assert sorted(s for s, _ in submitted) == sorted(["【トラック1　耳かき】", "おはようございます", "耳かきしますね"])
    assert {p for _, p in submitted} == {"INTERACTIVE"}


async def test_inlay_hints_for_requested_range_only(client):
    uri = open_doc(client, SCRIPT)
    await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fake.remember", arguments=["耳かきしますね", "おはようございます"]))
    hints = await client.text_document_inlay_hint_async(types.InlayHintParams(text_document=doc_id(uri), range=rng(2, 4)))
    assert [h.label for h in hints] == ["我来给你掏耳朵哦"]


async def test_code_actions_for_line_under_cursor(client):
    uri = open_doc(client, SCRIPT)
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(text_document=doc_id(uri), range=types.Range(start=pos(1, 4), end=pos(1, 4)), context=types.CodeActionContext(diagnostics=[]))
    )
    assert [a.title for a in actions] == ["Insert translation below", "Replace with translation"]
    insert, replace = actions
    assert list(insert.edit.changes) == [uri]
    assert list(insert.edit.changes[uri]) == [types.TextEdit(range=types.Range(start=pos(1, 11), end=pos(1, 11)), new_text="\n  早上好")]
    assert list(replace.edit.changes[uri]) == [types.TextEdit(range=types.Range(start=pos(1, 0), end=pos(1, 11)), new_text="  早上好")]


async def test_code_actions_for_each_text_line_of_selection(client):
    uri = open_doc(client, SCRIPT)
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(text_document=doc_id(uri), range=rng(1, 4), context=types.CodeActionContext(diagnostics=[]))
    )
    insert, replace = actions
    assert list(insert.edit.changes[uri]) == [
        types.TextEdit(range=types.Range(start=pos(1, 11), end=pos(1, 11)), new_text="\n  早上好"),
        types.TextEdit(range=types.Range(start=pos(3, 7), end=pos(3, 7)), new_text="\n我来给你掏耳朵哦"),
    ]
    assert [e.new_text for e in replace.edit.changes[uri]] == ["  早上好", "我来给你掏耳朵哦"]


async def test_no_code_actions_on_verbatim_line(client):
    uri = open_doc(client, SCRIPT)
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(text_document=doc_id(uri), range=rng(2, 2), context=types.CodeActionContext(diagnostics=[]))
    )
    assert not actions


async def test_completion_on_empty_line_under_japanese_line(client):
    uri = open_doc(client, SCRIPT)
    result = await client.text_document_completion_async(types.CompletionParams(text_document=doc_id(uri), position=pos(4, 0)))
    assert list(result.items) == [
        types.CompletionItem(
            label="我来给你掏耳朵哦",
            kind=types.CompletionItemKind.Text,
            detail="translation of line 4",
            filter_text="",
            text_edit=types.TextEdit(range=types.Range(start=pos(4, 0), end=pos(4, 0)), new_text="我来给你掏耳朵哦"),
        )
    ]


async def test_no_completion_elsewhere(client):
    uri = open_doc(client, SCRIPT)
    for line in (0, 1, 3):  # non-empty lines
        assert await client.text_document_completion_async(types.CompletionParams(text_document=doc_id(uri), position=pos(line, 1))) is None
    # the empty line after the last one is under an empty line
    assert await client.text_document_completion_async(types.CompletionParams(text_document=doc_id(uri), position=pos(5, 0))) is None
