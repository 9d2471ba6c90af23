"""Words vs sounds, decided by the dictionary: a labelled table of kana-only lines.

W = a word to translate, S = a sound kept as written. Katakana and hiragana, the interjections
that mean something, and what ASMR scripts are full of: breaths, kisses, licking, ear
cleaning, laughter.
"""

from __future__ import annotations

import pytest

from asmr_daemon.scripts import LineKind
from asmr_daemon.scripts.classify import decide

TABLE: list[tuple[str, str]] = [
    # words the one-kana-repeated shape used to keep as "sounds"
    ("ママ", "W"), ("パパ", "W"), ("バナナ", "W"), ("ジョージ", "W"), ("いい？", "W"), ("まだだ", "W"),
    ("じゃ", "W"), ("ママ、パパ", "W"), ("ねね", "W"), ("ココア", "W"), ("ばなな", "W"), ("ここ", "W"),
    # interjections that mean something
    ("ええ", "W"), ("ええ、そうね", "W"), ("はい", "W"), ("はい！", "W"), ("うん", "W"), ("うん……", "W"),
    ("いいえ", "W"), ("ねぇ", "W"), ("ねぇ……", "W"), ("ほら", "W"), ("いや", "W"), ("うんうん", "W"),
    ("はいはい", "W"), ("おはよう", "W"), ("ありがとう", "W"), ("おやすみ", "W"), ("ただいま", "W"),
    ("おかえり", "W"), ("すき", "W"), ("すき……", "W"), ("だめぇ", "W"), ("よしよし", "W"),
    ("なでなで", "W"), ("あーん", "W"), ("キミが", "W"), ("ヤダ", "W"), ("もう", "W"), ("ほんと？", "W"),
    ("きもちいい", "W"), ("いくよ", "W"), ("どう？", "W"), ("こっち", "W"), ("オッケー", "W"),
    # breathing
    ("ふー", "S"), ("ふー…", "S"), ("ふぅーっ", "S"), ("はぁ", "S"), ("はぁ…はぁ…", "S"), ("すー……はー……", "S"),
    ("すーはー、すーはー", "S"), ("スーハー", "S"), ("ｽｰﾊｰ", "S"), ("ふぅ", "S"), ("んっ", "S"), ("んん……", "S"),
    ("あっ", "S"), ("あぁ……", "S"), ("ひゃっ", "S"), ("んぅ", "S"),
    # kisses, licking, sucking
    ("ちゅっ", "S"), ("チュッ", "S"), ("ちゅ、ちゅっ", "S"), ("ちゅぱ…ちゅぅ…", "S"), ("ちゅぱちゅぱ", "S"),
    ("ぺろ、ぺろ", "S"), ("ぺろぺろぺろ", "S"), ("レロレロ", "S"), ("れろれろ", "S"), ("じゅるるっ", "S"),
    ("じゅぷ、じゅぷ", "S"), ("ぴちゃぴちゃ", "S"), ("くちゅくちゅ", "S"), ("はむはむ", "S"), ("あむっ", "S"),
    ("ごくん", "S"),
    # ear cleaning, rubbing, tapping
    ("かりかり", "S"), ("かりかり、かりかり……", "S"), ("カリカリ", "S"), ("ごしごし", "S"), ("ゴシゴシ", "S"),
    ("こしこし", "S"), ("ずりずり", "S"), ("すりすり", "S"), ("ごそごそ", "S"), ("とんとん", "S"), ("ぽんぽん", "S"),
    # laughter
    ("うふふ", "S"), ("うふふっ", "S"), ("えへへ", "S"), ("えへへ♪", "S"), ("あはは", "S"), ("ふふふ", "S"),
    ("ふふっ", "S"), ("くすくす", "S"), ("クスクス", "S"), ("（ちゅっ）", "S"),
    # a lone one-kana interjection: the price of the rule
    ("え？", "S"), ("ん？", "S"),
]


def test_the_table_is_big_enough() -> None:
    assert len(TABLE) >= 80
    assert {label for _, label in TABLE} == {"W", "S"}
    assert len({line for line, _ in TABLE}) == len(TABLE)


@pytest.mark.parametrize(("line", "label"), TABLE, ids=[f"{label}:{line}" for line, label in TABLE])
def test_words_and_sounds(line: str, label: str) -> None:
    kind, reason = decide(line)
    if label == "W":
        assert (kind, reason) == (LineKind.TEXT, "words")
    else:
        assert (kind, reason) == (LineKind.VERBATIM, "sound")
