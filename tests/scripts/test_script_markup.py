"""Inline markup: only words reach the model; wrapping and leading tags come back around the
translation, word-level timings and tags between words are dropped from it."""

from __future__ import annotations

import pytest

from asmr_daemon.scripts import LineKind, parse_text, render


def _one(text: str, fmt: str, index: int) -> tuple[str, str, str, tuple[str, ...]]:
    line = parse_text(text, fmt).lines[index]
    assert line.kind is LineKind.TEXT, line
    return line.prefix, line.body, line.suffix, line.dropped


VTT = "WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n{}\n"
SRT = "1\n00:00:01,000 --> 00:00:04,000\n{}\n"


@pytest.mark.parametrize(
    ("fmt", "source", "words", "translated"),
    [
        # WebVTT: voice, class span, italics, ruby (the reading is not sent), inline timestamps.
        ("vtt", "<v 姉>おかえりなさい", "おかえりなさい", "<v 姉>欢迎回来"),
        ("vtt", "<v.loud 姉>おかえり</v>", "おかえり", "<v.loud 姉>欢迎回来</v>"),
        ("vtt", "<c.yellow>耳元で</c>", "耳元で", "<c.yellow>欢迎回来</c>"),
        ("vtt", "<i>今日は</i>、ありがとう", "今日は、ありがとう", "欢迎回来"),
        ("vtt", "<ruby>漢字<rt>かんじ</rt></ruby>を読む", "漢字を読む", "欢迎回来"),
        ("vtt", "おや<00:00:02.000>すみ<00:00:03.000>なさい", "おやすみなさい", "欢迎回来"),
        ("vtt", "<00:00:01.500>おかえり", "おかえり", "<00:00:01.500>欢迎回来"),
        # SRT: HTML tags, sloppy ones, ASS-style override blocks.
        ("srt", "<i>おかえりなさい</i>", "おかえりなさい", "<i>欢迎回来</i>"),
        ("srt", '<font color="#ff0000">お姉ちゃん</font>', "お姉ちゃん", '<font color="#ff0000">欢迎回来</font>'),
        ("srt", "{\\an8}おかえりなさい", "おかえりなさい", "{\\an8}欢迎回来"),
        ("srt", "お姉<b>ちゃん</b>だよ", "お姉ちゃんだよ", "欢迎回来"),
        ("srt", "< i >おかえり< / i >", "おかえり", "< i >欢迎回来< / i >"),
    ],
)
def test_subtitle_markup(fmt: str, source: str, words: str, translated: str) -> None:
    text = (VTT if fmt == "vtt" else SRT).format(source)
    doc = parse_text(text, fmt)
    line = doc.lines[3 if fmt == "vtt" else 2]
    assert line.kind is LineKind.TEXT
    assert line.body == words and "".join(line.segments) == words
    assert render(doc, {line.index: "欢迎回来"}).split("\n")[line.index] == translated


@pytest.mark.parametrize(
    ("source", "prefix", "words"),
    [
        ("[00:12.00]君が好き", "[00:12.00]", "君が好き"),
        ("[00:12.00][01:30.50] 君が好き", "[00:12.00][01:30.50] ", "君が好き"),
        # Word-split kana: one word for the model, not a row of one-kana "sounds".
        ("[01:03.40]キ[01:03.60]ミ[01:03.78]が[01:03.90]好き", "[01:03.40]", "キミが好き"),
        ("[00:08.00]お[00:08.30]か[00:08.50]え[00:08.70]り", "[00:08.00]", "おかえり"),
        ("[00:02.000] <00:02.500> spark <00:03.000> light", "[00:02.000] <00:02.500> ", "spark light"),
        ("[00:05.000] hello [00:06.000] world", "[00:05.000] ", "hello world"),
    ],
)
def test_lrc_word_timings(source: str, prefix: str, words: str) -> None:
    doc = parse_text(f"[ti:歌]\n{source}\n", "lrc")
    line = doc.lines[1]
    assert (line.prefix, line.body) == (prefix, words)
    out = render(doc, {1: "我喜欢你"}).split("\n")
    assert out == ["[ti:歌]", prefix + "我喜欢你", ""]


def test_word_split_sound_is_still_a_sound() -> None:
    doc = parse_text("[00:01.00]ちゅ[00:01.20]っ\n", "lrc")
    assert doc.lines[0].kind is LineKind.VERBATIM and doc.lines[0].reason == "sound"


def test_markup_only_line_is_verbatim() -> None:
    doc = parse_text(VTT.format("<c.yellow></c>"), "vtt")
    assert doc.lines[3].kind is LineKind.VERBATIM and doc.lines[3].reason == "markup only"


def test_untranslated_line_keeps_its_markup() -> None:
    text = SRT.format("お姉<b>ちゃん</b>だよ")
    assert render(parse_text(text, "srt"), {}) == text


def test_plain_text_has_no_markup() -> None:
    assert _one("<i>タグではない</i>\n", "txt", 0) == ("", "<i>タグではない</i>", "", ())
