"""Which lines are translated and which are copied verbatim.

The rule (the README quotes it):

A line is **VERBATIM** (copied to the output unchanged) when it is

1. blank or whitespace only;
2. without letters: only punctuation, symbols, digits and spaces -- ``……``, ``――``, ``♪``,
   ``【01】``, timestamps. The long-vowel mark ``ー`` does not count as a letter;
3. a **sound line**: its letters are all kana (no kanji, no Latin or other letters) and every
   run of kana between punctuation/spaces, after dropping small kana (``ぁ``, ``っ``, ``ゅ``...)
   and ``ー`` and folding katakana to hiragana, is a sound chunk. A sound chunk is

   * one kana repeated any number of times (``ふー`` -> ふ, ``はぁ`` -> は, ``んっ`` -> ん,
     ``ちゅっ`` -> ち, ``ふふふ``), optionally after one other kana when repeated at least
     twice (laughs: ``うふふ``, ``えへへ``, ``あはは``); or
   * a syllable from a fixed onomatopoeia list (kisses, licking, ear cleaning, breathing:
     ``ちゅぱ``, ``ぺろ``, ``れろ``, ``じゅる``, ``かり``, ``ごし``, ``すーはー``... see
     ``SOUND_SYLLABLES``) repeated one or more times (``ぺろぺろ``, ``かりかり``).

Everything else that has Japanese or Latin letters is **TEXT**, including section headers
(``【トラック1　耳かき】``), stage directions (``（囁き）``), ``SE：`` and ``※`` notes -- they
need translating too. Real words written in kana stay TEXT because they are neither one
repeated kana nor listed sounds: ``ありがとう``, ``おはよう``, ``はい``, ``うん``, ``すき``,
``だめぇ``, ``よしよし``. The price of the rule: a lone one-kana interjection (``え？``,
``ん？``) is kept verbatim.
"""

from __future__ import annotations

import re
import unicodedata

from asmr_daemon.scripts.model import LineKind

# Written the way scripts spell them; normalised with the same function as the text.
SOUND_SYLLABLES_SPELLED: tuple[str, ...] = (
    # kisses, licking, sucking, swallowing
    "ちゅぱ", "ちゅぷ", "ちゅぴ", "ちゅう", "じゅる", "じゅぷ", "じゅぽ", "じゅぱ", "ぺろ", "れろ",
    "れる", "ちろ", "ぴちゃ", "くちゅ", "ぬちゅ", "ぐちゅ", "にゅる", "ごくん", "ごく", "こく", "はむ",
    "あむ", "もぐ", "ぷは",
    # breathing
    "すーはー", "すぅはぁ",
    # ear cleaning, rubbing, patting, rustling, tapping
    "かり", "こり", "がり", "こし", "ごし", "ずり", "ぞり", "すり", "ごそ", "がさ", "かさ", "さわ",
    "ぱち", "とん", "ぽん", "ぽふ", "ぎゅ", "ぴと", "くす",
)

_SMALL_KANA = frozenset("ぁぃぅぇぉっゃゅょゎゕゖ")
_LONG_MARKS = frozenset("ーｰ")
_KANA_RUN = re.compile(r"[\u3041-\u3096\u30a1-\u30fa\u30fcー]+")


def _is_kana(ch: str) -> bool:
    return "\u3041" <= ch <= "\u3096" or "\u30a1" <= ch <= "\u30fa"


def _is_letter(ch: str) -> bool:
    return unicodedata.category(ch).startswith("L") and ch not in _LONG_MARKS


def _core(chunk: str) -> str:
    """Kana chunk -> hiragana without small kana or long marks (``チュッ`` -> ``ち``)."""
    out = []
    for ch in chunk:
        if "\u30a1" <= ch <= "\u30f6":
            ch = chr(ord(ch) - 0x60)  # katakana -> hiragana
        if ch in _SMALL_KANA or ch in _LONG_MARKS:
            continue
        out.append(ch)
    return "".join(out)


SOUND_SYLLABLES: frozenset[str] = frozenset(_core(s) for s in SOUND_SYLLABLES_SPELLED)


def has_letters(text: str) -> bool:
    """True if ``text`` has any letter (kana, kanji, Latin...), ``ー`` not counted."""
    return any(_is_letter(ch) for ch in text)


def _is_sound_chunk(core: str) -> bool:
    if len(set(core)) <= 1:
        return True  # "", "ふ", "ははは", "んん"
    if len(core) >= 3 and len(set(core[1:])) == 1:
        return True  # うふふ, えへへ, あはは
    for unit in SOUND_SYLLABLES:
        if len(core) % len(unit) == 0 and core == unit * (len(core) // len(unit)):
            return True
    return False


def is_sound_line(text: str) -> bool:
    """True for onomatopoeia-only lines (``ふー…``, ``ちゅぱ…ちゅぅ…``, ``ぺろ、ぺろ``)."""
    norm = unicodedata.normalize("NFKC", text)  # half-width katakana -> full-width
    letters = [ch for ch in norm if _is_letter(ch)]
    if not letters or not all(_is_kana(ch) for ch in letters):
        return False
    return all(_is_sound_chunk(_core(run)) for run in _KANA_RUN.findall(norm))


def classify(text: str) -> LineKind:
    """TEXT if the line needs translating, VERBATIM if it is copied as is (rule above)."""
    if not text.strip() or not has_letters(text) or is_sound_line(text):
        return LineKind.VERBATIM
    return LineKind.TEXT


def split_padding(text: str) -> tuple[str, str, str]:
    """``"  本文  "`` -> ``("  ", "本文", "  ")``: indentation and trailing spaces stay verbatim."""
    stripped = text.strip()
    if not stripped:
        return text, "", ""
    start = len(text) - len(text.lstrip())
    return text[:start], stripped, text[start + len(stripped) :]
