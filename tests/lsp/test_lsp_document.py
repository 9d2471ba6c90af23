"""asmr.translateDocument, corrections on save, cancellation, malformed requests."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import Future

import pytest
from lsp_helpers import open_doc, pos, state
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

SCRIPT = "【トラック1　耳かき】\nおはようございます\n……\n耳かきしますね\n"
BILINGUAL = "【トラック1　耳かき】\n【音轨1 掏耳朵】\nおはようございます\n早上好\n……\n耳かきしますね\n我来给你掏耳朵哦\n"


async def raw_request(client, method, params):
    """Send JSON as is (the typed client API refuses malformed params)."""
    msg_id = f"raw-{uuid.uuid4()}"
    future = Future()
    client.protocol._request_futures[msg_id] = future
    client.protocol._send_data({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
    return await asyncio.wait_for(asyncio.wrap_future(future), 10)


async def execute(client, *arguments, command="asmr.translateDocument"):
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(command=command, arguments=list(arguments)))


async def test_translate_document_applies_bilingual_layout_with_progress(client):
    uri = open_doc(client, SCRIPT)
    result = await execute(client, uri)
    assert result == {"applied": True, "cancelled": False, "translated": 3}
    [applied] = client.editor.applied
    [edit] = applied.edit.changes[uri]
    assert edit.range == types.Range(start=pos(0, 0), end=pos(4, 0))
    assert edit.new_text == BILINGUAL
    [reports] = client.progress_reports.values()
    kinds = [r.kind for r in reports]
    assert kinds[0] == "begin" and kinds[-1] == "end" and "report" in kinds
    assert reports[-2].message == "3/3 lines" and reports[-2].percentage == 100


async def test_translate_document_replace_layout(client):
    uri = open_doc(client, SCRIPT)
    await execute(client, uri, "replace")
    [applied] = client.editor.applied
    assert applied.edit.changes[uri][0].new_text == "【音轨1 掏耳朵】\n早上好\n……\n我来给你掏耳朵哦\n"


async def test_translate_document_cancelled_from_progress(client):
    uri = open_doc(client, SCRIPT + "遅延する行です\n")
    task = asyncio.ensure_future(execute(client, uri))
    for _ in range(200):  # wait until the slow line is with the engine
        if ["遅延する行です", "INTERACTIVE"] in (await state(client))["submitted"]:
            break
        await asyncio.sleep(0.02)
    [token] = client.progress_reports
    client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token))
    result = await asyncio.wait_for(task, 10)
    assert result == {"applied": False, "cancelled": True, "translated": 0}
    assert client.editor.applied == []
    assert client.progress_reports[token][-1].kind == "end"
    assert "遅延する行です" in (await state(client))["cancelled"]


async def test_cancel_request_cancels_engine_future(client):
    uri = open_doc(client, "遅延する行です\n")
    params = types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=pos(0))
    # (pytest-lsp's send_request_async is a coroutine: it sends only once scheduled)
    future = asyncio.ensure_future(client.protocol.send_request_async(types.TEXT_DOCUMENT_HOVER, params, msg_id="slow-hover"))
    for _ in range(200):
        if (await state(client))["submitted"]:
            break
        await asyncio.sleep(0.02)
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="slow-hover"))
    with pytest.raises(JsonRpcException) as excinfo:
        await asyncio.wait_for(future, 10)
    assert excinfo.value.code == types.LSPErrorCodes.RequestCancelled
    for _ in range(100):
        if (await state(client))["cancelled"]:
            break
        await asyncio.sleep(0.02)
    assert (await state(client))["cancelled"] == ["遅延する行です"]


async def test_did_save_records_changed_translations(client):
    await execute(client, "おはようございます", "耳かきしますね", command="fake.remember")
    text = "おはようございます\n早上好呀\n\n耳かきしますね\n我来给你掏耳朵哦\n"
    uri = open_doc(client, text)
    client.text_document_did_save(types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))
    for _ in range(200):
        if (await state(client))["corrections"]:
            break
        await asyncio.sleep(0.02)
    assert (await state(client))["corrections"] == [["おはようございます", "早上好呀"]]
    # saving again records nothing new; hover now shows the correction
    client.text_document_did_save(types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))
    hover = await client.text_document_hover_async(types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=pos(0)))
    assert hover.contents.value == "早上好呀"
    assert (await state(client))["corrections"] == [["おはようございます", "早上好呀"]]


async def test_translation_lines_get_no_hover(client):
    uri = open_doc(client, BILINGUAL)
    params = types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=pos(3))
    assert await client.text_document_hover_async(params) is None


@pytest.mark.parametrize(
    "uri, line",
    [
        ("file:///tmp/asmr-lsp-test/not-open.txt", 0),  # unknown document
        ("not a uri", 0),
        ("file:///tmp/asmr-lsp-test/script.txt", 99),  # line out of range
        ("file:///tmp/asmr-lsp-test/script.txt", -1),  # does not even deserialize
        (42, 0),
    ],
)
async def test_malformed_requests_get_invalid_params_and_server_goes_on(client, uri, line):
    good = open_doc(client, SCRIPT)
    with pytest.raises(JsonRpcInvalidParams):
        await raw_request(client, types.TEXT_DOCUMENT_HOVER, {"textDocument": {"uri": uri}, "position": {"line": line, "character": 0}})
    hover = await client.text_document_hover_async(types.HoverParams(text_document=types.TextDocumentIdentifier(uri=good), position=pos(1)))
    assert hover.contents.value == "早上好"


async def test_bad_command_arguments(client):
    with pytest.raises(JsonRpcInvalidParams):
        await execute(client)
    with pytest.raises(JsonRpcInvalidParams):
        await execute(client, "file:///tmp/asmr-lsp-test/script.txt", "sideways")
    with pytest.raises(JsonRpcInvalidParams):
        await execute(client, "file:///tmp/asmr-lsp-test/never-opened.txt")


async def test_malformed_subtitle_is_quiet_for_queries_and_explained_for_the_command(client):
    uri = open_doc(client, "1\nnot a timing line\nおはようございます\n", name="broken.srt", language_id="srt")
    hover = await client.text_document_hover_async(types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=pos(2)))
    assert hover is None
    with pytest.raises(JsonRpcException) as excinfo:
        await execute(client, uri)
    assert "broken.srt" in excinfo.value.message
