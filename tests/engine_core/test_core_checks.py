"""Each check both ways, on realistic outputs."""

from __future__ import annotations

import pytest

from asmr_daemon.engine.checks import check_all, check_translation, max_repeats
from asmr_daemon.engine.prompts import GlossaryEntry

FINE = [
    ("はぁ…はぁ…", "哈啊……哈啊……"),
    ("ふー…", "呼——……"),
    ("ねえ、聞いてる？", "喂，你在听吗？"),
    ("ちゅっ", "啾"),
    ("ん…あっ、だめ…", "嗯…啊っ，不行…"),  # one small kana and single sounds are allowed
    ("あ、あの……お兄ちゃん", "あ、那个……哥哥"),
    ("はぁはぁはぁはぁ", "哈啊哈啊哈啊哈啊"),  # repeated because the source repeats
    ("ちゅ、ちゅ、ちゅ、ちゅ、ちゅ", "啾、啾、啾、啾、啾"),
    ("……", "…………"),  # punctuation runs are style
    ("Sophieです", "我是Sophie"),  # "sop" inside a word is not a token
    ("おやすみなさい、いい夢を見てね", "晚安，做个好梦哦"),
    ("SE：ドアの音", "SE：开门声"),
    ("文字化け\ufffd", "乱码\ufffd"),  # U+FFFD already in the source
]

BAD = [
    ("はい", "", "empty output"),
    ("はい", "  \n", "empty output"),
    ("はい", "[gMASK]是", "leaked special token [gMASK]"),
    ("はい", "是 sop", "leaked special token sop"),
    ("はい", "是<|user|>", "leaked special token <|user|>"),
    ("はい", "是\n\n[Round 2]\n\n问：", "leaked special token [Round"),
    ("はい", "上文（仅供参考，不要翻译）：好的", "leaked special token 上文（仅供参考"),
    ("好きだよ", "我爱你我爱你我爱你我爱你我爱你", "repetition"),
    ("はぁはぁ", "哈啊哈啊哈啊哈啊哈啊", "repetition"),
    ("うん", "嗯，我知道了，你说的没错，我明白了呢，好的", "output too long"),
    ("ちゅぱちゅぱ", "ちゅぱちゅぱ", "leftover kana"),
    ("お兄ちゃん、だいすき", "哥哥、だいすき", "leftover kana"),
    ("あのね", "あの、那个", "leftover kana"),  # 2 full kana, 40% of the letters
    ("お兄ちゃん", "哥\ufffd", "U+FFFD in the output"),  # byte-fallback pieces that are not UTF-8
]


@pytest.mark.parametrize(("source", "output"), FINE)
def test_fine_outputs_pass(source: str, output: str) -> None:
    assert check_translation(source, output) is None


@pytest.mark.parametrize(("source", "output", "problem"), BAD)
def test_bad_outputs_are_flagged(source: str, output: str, problem: str) -> None:
    assert check_translation(source, output) == problem


def test_extra_special_tokens_and_source_exemption() -> None:
    assert check_translation("はい", "是<eos>", special_tokens=["<eos>"]) == "leaked special token <eos>"
    assert check_translation("问：はい", "问：是") is None  # it was in the source


def test_max_repeats() -> None:
    assert max_repeats("我爱你我爱你我爱你") == 3
    assert max_repeats("哈哈哈哈哈") == 5
    assert max_repeats("…………——") == 1


def test_glossary_check_is_part_of_check_all() -> None:
    entries = [GlossaryEntry("ミナ", "米娜")]
    assert check_all("ミナちゃん", "米娜酱", glossary=entries) is None
    assert check_all("ミナちゃん", "小米酱", glossary=entries) == "glossary term ミナ not used"
    assert check_all("ミナちゃん", "", glossary=entries) == "empty output"
