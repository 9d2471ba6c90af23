from __future__ import annotations

from lsp_helpers import open_doc, pos
from lsprotocol import types

SCRIPT = "【トラック1　耳かき】\nおはようございます\n……\nふー…\n問題のある行です\n"


async def hover(client, uri, line, character=0):
    return await client.text_document_hover_async(
        types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=pos(line, character))
    )


async def test_hover_shows_translation_of_text_line(client):
    uri = open_doc(client, SCRIPT)
    result = await hover(client, uri, 1, 3)
    assert result == types.Hover(
        contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value="早上好"),
        range=types.Range(start=pos(1, 0), end=pos(1, 9)),
    )
    header = await hover(client, uri, 0)
    assert header.contents.value == "【音轨1 掏耳朵】"


async def test_hover_nothing_on_verbatim_lines(client):
    uri = open_doc(client, SCRIPT)
    assert await hover(client, uri, 2) is None  # ……
    assert await hover(client, uri, 3) is None  # ふー… (a sound)
    assert await hover(client, uri, 5) is None  # past the final newline


async def test_hover_flags_problems(client):
    uri = open_doc(client, SCRIPT)
    result = await hover(client, uri, 4)
    assert result.contents.value == "有问题的行\n\n⚠ leftover kana"


async def test_hover_on_subtitle_text_only(client):
    srt = "1\n00:00:01,000 --> 00:00:03,000\nおはようございます\n\n2\n00:00:04,000 --> 00:00:06,000\n耳かきしますね\n"
    uri = open_doc(client, srt, name="track.srt", language_id="srt")
    assert await hover(client, uri, 0) is None
    assert await hover(client, uri, 1) is None
    assert (await hover(client, uri, 2)).contents.value == "早上好"
    assert (await hover(client, uri, 6)).contents.value == "我来给你掏耳朵哦"


async def test_requests_run_at_interactive_priority(client):
    from lsp_helpers import state

    uri = open_doc(client, SCRIPT)
    await hover(client, uri, 1)
    submitted = (await state(client))["submitted"]
    assert submitted == [["おはようございます", "INTERACTIVE"]]
