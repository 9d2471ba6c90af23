"""Sentence splitting: exact expected pieces for tricky lines."""

from __future__ import annotations

import pytest

from asmr_daemon.scripts import Segmenter, get_segmenter

CASES = [
    # plain sentences
    (
        "おかえりなさい。今日もお仕事、本当にお疲れさまでした。ほら、こっちに来て、ゆっくり横になってくださいね。",
        ["おかえりなさい。", "今日もお仕事、本当にお疲れさまでした。", "ほら、こっちに来て、ゆっくり横になってくださいね。"],
    ),
    # 。 inside a quote does not split; the quotative と keeps the quote with its verb
    (
        "「今日は。いい天気ね」と彼女は言った。それから二人で散歩に出かけました。",
        ["「今日は。いい天気ね」と彼女は言った。", "それから二人で散歩に出かけました。"],
    ),
    ("「おはよう！」と言って、彼女は部屋を出ていきました。", ["「おはよう！」と言って、彼女は部屋を出ていきました。"]),
    # a quote ending in punctuation ends the sentence when no particle follows
    (
        "「ずっと一緒だよ。」ふふ、嬉しい？私もとっても嬉しいです。",
        ["「ずっと一緒だよ。」", "ふふ、嬉しい？", "私もとっても嬉しいです。"],
    ),
    (
        "「おはよう！」「今日もいい天気だね」そう言って彼女は笑った。",
        ["「おはよう！」", "「今日もいい天気だね」そう言って彼女は笑った。"],
    ),
    # ……, runs of ！？, full-width space goes with the preceding sentence
    (
        "奥の方、ちょっとだけ失礼しますね……はい、取れました！　大きいのが取れましたよ！？",
        ["奥の方、ちょっとだけ失礼しますね……", "はい、取れました！\u3000", "大きいのが取れましたよ！？"],
    ),
    # a leading ellipsis is not a sentence of its own
    (
        "……ねえ、起きてる？もう朝だよ。早く起きないと遅刻しちゃうよ？",
        ["……ねえ、起きてる？", "もう朝だよ。", "早く起きないと遅刻しちゃうよ？"],
    ),
    # stage direction in parentheses stays with its sentence; trailing ♪ stays too
    (
        "（囁き）ふふ、くすぐったいですか？　じゃあ、もっとやっちゃいます♪",
        ["（囁き）ふふ、くすぐったいですか？\u3000", "じゃあ、もっとやっちゃいます♪"],
    ),
    # latin !? and ASCII spaces; a last sentence without punctuation
    (
        "Really!? 本当に!? それはすごいですね。あなたのおかげです",
        ["Really!? ", "本当に!? ", "それはすごいですね。", "あなたのおかげです"],
    ),
    # closing bracket after punctuation with no opener on this line (quote began on the line above)
    (
        "ずっと、ずっと一緒にいようね。」そう言って、彼女は目を閉じた。",
        ["ずっと、ずっと一緒にいようね。」", "そう言って、彼女は目を閉じた。"],
    ),
    # 。 inside （…） does not split, the closing ） stays with its sentence
    (
        "（ここで一度深呼吸。ゆっくりと。）それでは、右のお耳から始めていきますね。",
        ["（ここで一度深呼吸。ゆっくりと。）", "それでは、右のお耳から始めていきますね。"],
    ),
    # no punctuation at all: one piece
    (
        "今日はずっとあなたのそばにいてあげるからゆっくり休んでいいんだよ",
        ["今日はずっとあなたのそばにいてあげるからゆっくり休んでいいんだよ"],
    ),
    # short line stays whole even with several sentences
    ("うん。そうだね。ありがとう。", ["うん。そうだね。ありがとう。"]),
    # ellipsis runs with ？ and a trailing letterless piece
    (
        "えっと……その……今日はずっと一緒にいてもいいですか……？",
        ["えっと……", "その……", "今日はずっと一緒にいてもいいですか……？"],
    ),
    # 『』 nested in 「」
    (
        "「彼女は『また明日ね。』って言ったの。」だから、今日も待っているんです。",
        ["「彼女は『また明日ね。』って言ったの。」", "だから、今日も待っているんです。"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_split(segmenter: Segmenter, text: str, expected: list[str]) -> None:
    pieces = segmenter.split(text)
    assert pieces == expected
    assert "".join(pieces) == text


def test_min_chars_is_configurable(segmenter: Segmenter) -> None:
    small = Segmenter(min_chars=4, nlp=segmenter.nlp)
    assert small.split("うん。そうだね。") == ["うん。", "そうだね。"]


def test_empty_and_whitespace(segmenter: Segmenter) -> None:
    assert segmenter.split("") == []
    text = "ありがとう。  " * 4
    assert segmenter.split(text) == ["ありがとう。  "] * 4


def test_get_segmenter_is_cached() -> None:
    assert get_segmenter() is get_segmenter()


def test_short_text_does_not_load_spacy() -> None:
    seg = Segmenter()
    assert seg.split("ちゅっ") == ["ちゅっ"]
    assert seg._nlp is None


def test_huge_line_is_kept_whole(segmenter: Segmenter) -> None:
    text = "あいうえお。" * 5000  # beyond what SudachiPy accepts in one call
    assert segmenter.split(text) == [text]
