"""One definition of kana (scripts.kana) behind classification, the output checks and the
bilingual layout: they agree on every kind of kana, and none counts ー as one."""

from __future__ import annotations

import pytest

from asmr_daemon.engine.checks import leftover_kana
from asmr_daemon.scripts.bilingual import has_kana as bilingual_has_kana
from asmr_daemon.scripts.classify import has_letters, is_sound_line
from asmr_daemon.scripts.kana import has_kana, is_kana

KANA = ["あ", "ゖ", "ゝ", "ゞ", "ゟ", "ア", "ヺ", "ヽ", "ヿ", "ㇰ", "ㇿ", "ｦ", "ｱ", "ﾝ"]
NOT_KANA = ["ー", "ｰ", "漢", "a", "〜", "・", "゛", "ﾞ"]


@pytest.mark.parametrize("ch", KANA)
def test_kana(ch: str) -> None:
    assert is_kana(ch) and has_kana(ch) and bilingual_has_kana(f"中文{ch}")


@pytest.mark.parametrize("ch", NOT_KANA)
def test_not_kana(ch: str) -> None:
    assert not is_kana(ch) and not bilingual_has_kana(f"中文{ch}")


def test_the_three_users_agree() -> None:
    assert leftover_kana("ｱｲｳ") and leftover_kana("ありがとう") and not leftover_kana("谢谢ー")
    assert leftover_kana("ああーあ")  # ー does not end a run of kana
    assert is_sound_line("ｽｰﾊｰ") and not has_letters("ーー")
