"""The TEXT / VERBATIM rule, both ways."""

from __future__ import annotations

import pytest

from asmr_daemon.scripts import LineKind, classify, is_sound_line

VERBATIM = [
    "",
    "   ",
    "\u3000",
    "……",
    "――",
    "―――",
    "♪",
    "【01】",
    "00:00:01,000 --> 00:00:02,000",
    "ーー",
    # sound lines
    "ちゅっ",
    "ふー…",
    "ふぅーっ",
    "はぁ…はぁ…",
    "んっ",
    "ぺろ、ぺろ",
    "ぺろぺろぺろ",
    "ちゅぱ…ちゅぅ…",
    "かりかり、かりかり……",
    "すー……はー……",
    "すーはー、すーはー",
    "うふふっ",
    "えへへ♪",
    "チュッ",
    "ｽｰﾊｰ",
    "（ちゅっ）",
    "じゅるるっ",
]

TEXT = [
    "ありがとう",
    "おはよう",
    "はい",
    "うん",
    "すき……",
    "だめぇ…",
    "よしよし",
    "あーん",
    "ちゅっ、好き",
    "はぁ……はぁ……ありがとう",
    "【トラック1　耳かき】",
    "（囁き）",
    "SE：衣擦れの音",
    "ＳＥ：足音",
    "※ここから右耳です。",
    "OK",
    "おやすみなさい。",
    "なでなで",
]


@pytest.mark.parametrize("line", VERBATIM)
def test_verbatim(line: str) -> None:
    assert classify(line) is LineKind.VERBATIM


@pytest.mark.parametrize("line", TEXT)
def test_text(line: str) -> None:
    assert classify(line) is LineKind.TEXT


def test_sound_line_needs_kana_only() -> None:
    assert is_sound_line("ちゅっ")
    assert not is_sound_line("……")  # no letters at all is a different rule
    assert not is_sound_line("ちゅっ♪ Kiss")
