"""What counts as kana: the one definition that classification, the output checks and the
bilingual layout share.

Kana letters are hiragana U+3041-3096 and the iteration marks ゝゞゟ (U+309D-309F), katakana
U+30A1-30FA and ヽヾヿ (U+30FD-30FF), the small katakana extensions U+31F0-31FF and
half-width katakana U+FF66-FF9D. The long-vowel marks ー and ｰ are not letters (``ふーー`` is one
sound, a line of ``ーー`` has no words); they are ``LONG_MARKS``.
"""

from __future__ import annotations

import re

SMALL_KANA = frozenset("ぁぃぅぇぉっゃゅょゎゕゖァィゥェォッャュョヮヵヶㇰㇱㇲㇳㇴㇵㇶㇷㇸㇹㇺㇻㇼㇽㇾㇿｧｨｩｪｫｬｭｮｯ")
LONG_MARKS = frozenset("ーｰ")
_RANGES = "\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fd-\u30ff\u31f0-\u31ff\uff66-\uff6f\uff71-\uff9d"
KANA_RE = re.compile(f"[{_RANGES}]")
# A run of kana and long marks: one word or one sound, as written (ちゅぱ, すーはー).
KANA_RUN_RE = re.compile(f"[{_RANGES}ーｰ]+")


def is_kana(ch: str) -> bool:
    """True for a kana letter (hiragana, katakana, half-width katakana); ー is not one."""
    return KANA_RE.fullmatch(ch) is not None


def has_kana(text: str) -> bool:
    return KANA_RE.search(text) is not None


def is_full_kana(ch: str) -> bool:
    """A kana letter that is not small (ぁ, っ, ゃ...): what a leftover-Japanese check counts."""
    return is_kana(ch) and ch not in SMALL_KANA


def to_hiragana(ch: str) -> str:
    """Full-width katakana -> hiragana (``チ`` -> ``ち``); anything else unchanged."""
    return chr(ord(ch) - 0x60) if "\u30a1" <= ch <= "\u30f6" else ch
