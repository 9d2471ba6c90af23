"""The language server of a real ``asmr-daemon serve`` (tiny model + LoRA), spoken to by pytest-lsp
over the stdio bridge (``asmr-daemon lsp``) and over TCP: every answer is compared with the
kit's hand-written translation (``K.expected``).

One daemon serves the whole module; a second one, bound to a non-loopback address with a token,
is started only for the token test.
"""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from real_daemon import (
    ANSWER_TIMEOUT,
    Script,
    apply_edits,
    bridge_client,
    close,
    connect,
    drop,
    hover,
    initialize,
    open_doc,
    running_daemon,
    tcp_client,
)

pytestmark = pytest.mark.slow

TOKEN = "e2e-s3cret-token"
ONE_SENTENCE = 14  # 次は左耳です。
THREE_SENTENCES = 4  # 今日もお疲れさまでした。外は寒かったでしょう？さあ、こっちに座ってください。
BLANK_UNDER_JAPANESE = 6  # the empty line under 温かいお茶を淹れましたよ。


@pytest.fixture(scope="module")
def daemon(tiny_kit):
    with running_daemon(tiny_kit, tcp="127.0.0.1") as daemon:
        yield daemon


@pytest.fixture(scope="module")
def token_daemon(tiny_kit):
    with running_daemon(tiny_kit, tcp="0.0.0.0", config=f'[lsp]\ntoken = "{TOKEN}"\n') as daemon:
        yield daemon


@pytest.fixture(scope="module")
def script(tiny_kit) -> Script:
    return Script.of(tiny_kit)


@pytest.fixture(params=["bridge", "tcp"])
async def client(request, daemon):
    client = await connect(daemon, request.param)
    await initialize(client)
    yield client
    await close(client)


async def test_hover_is_the_expected_translation(client, script):
    uri = open_doc(client, script.text)
    for line in (ONE_SENTENCE, THREE_SENTENCES):
        assert await hover(client, uri, line) == script.expected[line]


async def test_insert_translation_below(client, script):
    uri = open_doc(client, script.text)
    line = 9  # それでは、耳かきを始めますね。痛かったら言ってくださいね。
    actions = await asyncio.wait_for(
        client.text_document_code_action_async(
            types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                range=types.Range(start=types.Position(line=line, character=0), end=types.Position(line=line, character=0)),
                context=types.CodeActionContext(diagnostics=[]),
            )
        ),
        ANSWER_TIMEOUT,
    )
    by_title = {a.title: a for a in actions}
    assert list(by_title) == ["Insert translation below", "Replace with translation"]
    insert = by_title["Insert translation below"].edit.changes[uri]
    assert apply_edits(script.text, insert) == script.with_inserted(line, script.expected[line])
    replace = by_title["Replace with translation"].edit.changes[uri]
    assert apply_edits(script.text, replace).split("\n")[line] == script.expected[line]


async def test_translate_document_is_bilingual_with_progress(client, script):
    uri = open_doc(client, script.text)
    result = await asyncio.wait_for(
        client.workspace_execute_command_async(types.ExecuteCommandParams(command="asmr.translateDocument", arguments=[uri])),
        ANSWER_TIMEOUT,
    )
    total = len(script.translated())
    assert result == {"applied": True, "cancelled": False, "translated": total}

    [applied] = client.applied
    assert applied.label == "Translate document"
    edits = applied.edit.changes[uri]
    assert apply_edits(script.text, edits) == script.bilingual()

    [reports] = client.progress_reports.values()
    assert isinstance(reports[0], types.WorkDoneProgressBegin) and reports[0].title == "Translating script.txt"
    middle = reports[1:-1]
    assert middle and all(isinstance(r, types.WorkDoneProgressReport) for r in middle)
    assert middle[-1].message == f"{total}/{total} lines" and middle[-1].percentage == 100
    assert [r.percentage for r in middle] == sorted(r.percentage for r in middle)
    assert isinstance(reports[-1], types.WorkDoneProgressEnd) and reports[-1].message == f"{total} lines translated"


async def test_completion_on_empty_line_offers_the_translation_of_the_line_above(client, script):
    uri = open_doc(client, script.text)
    row = BLANK_UNDER_JAPANESE
    assert script.lines[row] == "" and script.lines[row - 1] != script.expected[row - 1]
    completions = await asyncio.wait_for(
        client.text_document_completion_async(
            types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=row, character=0))
        ),
        ANSWER_TIMEOUT,
    )
    [item] = completions.items
    assert item.label == script.expected[row - 1]
    lines = apply_edits(script.text, [item.text_edit]).split("\n")
    assert lines[row] == script.expected[row - 1]
    assert lines[:row] + lines[row + 1 :] == script.text.split("\n")[:row] + script.text.split("\n")[row + 1 :]


async def test_two_clients_at_once_both_get_answers(daemon, script):
    bridged, direct = await asyncio.gather(bridge_client(daemon), tcp_client(daemon.tcp_port, daemon.token))
    await asyncio.gather(initialize(bridged), initialize(direct))
    uris = open_doc(bridged, script.text, "a.txt"), open_doc(direct, script.text, "b.txt")
    lines = 23, 25  # not asked for by the tests above: the model answers both, in one batch or two
    answers = await asyncio.gather(hover(bridged, uris[0], lines[0]), hover(direct, uris[1], lines[1]))
    assert answers == [script.expected[lines[0]], script.expected[lines[1]]]
    await asyncio.gather(close(bridged), close(direct))


async def test_one_clients_exit_leaves_the_other_working(daemon, script):
    bridged, direct = await bridge_client(daemon), await tcp_client(daemon.tcp_port, daemon.token)
    await initialize(bridged)
    await initialize(direct)
    open_doc(bridged, script.text)
    uri = open_doc(direct, script.text)

    await close(bridged)  # shutdown + exit: the bridge process ends, the daemon does not
    assert daemon.proc.poll() is None
    assert await hover(direct, uri, 22) == script.expected[22]

    await close(direct)  # the same over TCP
    again = await bridge_client(daemon)
    await initialize(again)
    uri = open_doc(again, script.text)
    assert await hover(again, uri, 21) == script.expected[21]
    await close(again)


async def test_non_loopback_tcp_needs_the_token(token_daemon, script):
    port = token_daemon.tcp_port
    for token in (None, "a-guess"):
        refused = await tcp_client(port)
        with pytest.raises(JsonRpcException) as excinfo:
            await initialize(refused, token)
        assert "token" in excinfo.value.message
        # The daemon hangs up on it: the connection task ends without our help.
        await asyncio.wait_for(asyncio.gather(*refused._async_tasks, return_exceptions=True), 10)
        await drop(refused)

    allowed = await tcp_client(port)
    await initialize(allowed, TOKEN)
    uri = open_doc(allowed, script.text)
    assert await hover(allowed, uri, ONE_SENTENCE) == script.expected[ONE_SENTENCE]
    await close(allowed)

    # The Unix socket (only this user can open it) needs no token: the bridge works as usual.
    bridged = await bridge_client(token_daemon)
    await initialize(bridged)
    uri = open_doc(bridged, script.text)
    assert await hover(bridged, uri, 2) == script.expected[2]
    await close(bridged)
