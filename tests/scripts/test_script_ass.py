"""ASS/SSA: only the Text field of Dialogue lines is translated, everything else byte-identical."""

from __future__ import annotations

from pathlib import Path

import pytest

from asmr_daemon.errors import MalformedScriptError
from asmr_daemon.scripts import (
    LineKind,
    format_for_path,
    output_name,
    parse_text,
    read_script,
    render,
    write_translation,
)

ASS = (
    "\ufeff[Script Info]\r\n"
    "; Aegisub で作成\r\n"
    "Title: 耳かき\r\n"
    "ScriptType: v4.00+\r\n"
    "\r\n"
    "[V4+ Styles]\r\n"
    "Format: Name, Fontname, Fontsize, PrimaryColour, Bold\r\n"
    "Style: Default,ＭＳ ゴシック,48,&H00FFFFFF,0\r\n"
    "\r\n"
    "[Events]\r\n"
    "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\r\n"
    "Dialogue: 0,0:00:01.00,0:00:03.00,Default,姉,0,0,0,,{\\an8}おかえりなさい、お疲れさま\r\n"
    "Comment: 0,0:00:03.00,0:00:04.00,Default,,0,0,0,,ここはコメント\r\n"
    "Dialogue: 0,0:00:04.00,0:00:06.00,Default,,0,0,0,,今日は\\Nゆっくり休んでね\r\n"
    "Dialogue: 0,0:00:06.00,0:00:07.00,Default,,0,0,0,,ちゅっ\r\n"
    "Dialogue: 0,0:00:07.00,0:00:08.00,Default,,0,0,0,,{\\p1}m 0 0 l 100 0 100 100{\\p0}\r\n"
    "Dialogue: 0,0:00:08.00,0:00:09.00,Default,,0,0,0,,{\\i1}またね、{\\i0}お兄ちゃん\r\n"
)


@pytest.fixture()
def ass_file(tmp_path: Path) -> Path:
    path = tmp_path / "耳かき.ass"
    path.write_bytes(ASS.encode("utf-8"))
    return path


def test_only_dialogue_text_is_translated(ass_file: Path) -> None:
    doc = read_script(ass_file)
    assert doc.format == "ass" and doc.bom
    texts = [(line.index, line.body) for line in doc.text_lines]
    assert texts == [(11, "おかえりなさい、お疲れさま"), (13, "今日は ゆっくり休んでね"), (16, "またね、お兄ちゃん")]
    assert doc.lines[11].prefix == "Dialogue: 0,0:00:01.00,0:00:03.00,Default,姉,0,0,0,,{\\an8}"
    assert doc.lines[7].reason == "[v4+ styles] line"  # the Japanese font name is not translated
    assert doc.lines[12].kind is LineKind.VERBATIM  # Comment:
    assert doc.lines[14].reason == "sound"
    assert doc.lines[15].reason == "vector drawing"
    assert doc.lines[13].dropped == ("\\N",)


def test_writes_name_zh_ass_byte_identical_outside_text(ass_file: Path, tmp_path: Path) -> None:
    doc = read_script(ass_file)
    assert output_name(ass_file.name) == "耳かき.zh.ass"
    dest = write_translation(doc, {11: "欢迎回来，辛苦了", 13: "今天好好休息", 16: "再见，哥哥"},
                             tmp_path / output_name(ass_file.name), encoding="original")
    src, out = ASS.split("\r\n"), dest.read_bytes().decode("utf-8").split("\r\n")
    assert len(out) == len(src)
    changed = [i for i, (a, b) in enumerate(zip(src, out, strict=True)) if a != b]
    assert changed == [11, 13, 16]
    assert out[11] == "Dialogue: 0,0:00:01.00,0:00:03.00,Default,姉,0,0,0,,{\\an8}欢迎回来，辛苦了"
    assert out[13] == "Dialogue: 0,0:00:04.00,0:00:06.00,Default,,0,0,0,,今天好好休息"
    # leading override blocks come back (positioning must survive); the inner {\i0} cannot
    assert out[16] == "Dialogue: 0,0:00:08.00,0:00:09.00,Default,,0,0,0,,{\\i1}再见，哥哥"


def test_ssa_and_text_with_commas() -> None:
    assert format_for_path("a.SSA") == "ass"
    text = ("[Script Info]\nScriptType: v4.00\n\n[Events]\nFormat: Marked, Start, End, Style, Name, MarginL, "
            "MarginR, MarginV, Effect, Text\nDialogue: Marked=0,0:00:01.00,0:00:02.00,*Default,,0,0,0,,はい、そうです、ね\n")
    doc = parse_text(text, "ass")
    assert [line.body for line in doc.text_lines] == ["はい、そうです、ね"]


def test_dialogue_with_too_few_fields_is_copied_and_reported() -> None:
    doc = parse_text("[Script Info]\n\n[Events]\nDialogue: 0,0:00:01.00,こんにちは\n", "ass")
    assert doc.text_lines == []
    assert [(r.line, r.code) for r in doc.repairs] == [(4, "block-copied")]
    assert render(doc, {}) == "[Script Info]\n\n[Events]\nDialogue: 0,0:00:01.00,こんにちは\n"


def test_not_an_ass_script() -> None:
    with pytest.raises(MalformedScriptError, match="not an ASS/SSA script"):
        parse_text("ただのテキスト\n", "ass", source_name="a.ass")
