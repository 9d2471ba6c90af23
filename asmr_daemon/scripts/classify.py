"""Which lines are translated and which are copied verbatim.

The rule (the README quotes it):

A line is **VERBATIM** (copied to the output unchanged) when it is

1. blank or whitespace only;
2. without letters: only punctuation, symbols, digits and spaces -- ``……``, ``――``, ``♪``,
   ``【01】``, timestamps. The long-vowel mark ``ー`` does not count as a letter;
3. a **sound line**: its letters are all kana, every run of kana between punctuation/spaces is
   sound-shaped, and the dictionary (SudachiPy) finds no real word in it. A run is sound-shaped
   when, after dropping small kana (``ぁ``, ``っ``, ``ゅ``...) and ``ー`` and folding katakana to
   hiragana, it is one kana repeated (``ふー``, ``はぁ``, ``んっ``, ``ちゅっ``, ``ふふふ``), one
   kana followed by another repeated (``うふふ``, ``えへへ``), or a syllable from a fixed
   onomatopoeia list (kisses, licking, ear cleaning, breathing, see ``SOUND_SYLLABLES``)
   repeated (``ぺろぺろ``, ``かりかり``). Listed syllables are sounds whatever the dictionary
   says (``はむ`` is also "ham"). Otherwise a dictionary token of at least two kana is a real
   word when it is a noun, verb, adjective, auxiliary, conjunction... (``ママ``, ``バナナ``,
   ``いい``, ``じゃ``), an adverb that is not itself sound-shaped (``まだ``), or one of the
   interjections that mean something (``ええ``, ``ねぇ``; ``MEANINGFUL_INTERJECTIONS``). Other
   interjections (``はぁ``, ``うふふ``, ``あっ``) are sounds, and so is a run the dictionary can
   only read by tearing a syllable apart (``じ|ゅ|るる``).

Everything else that has Japanese or Latin letters is **TEXT**, including section headers
(``【トラック1　耳かき】``), stage directions (``（囁き）``), ``SE：`` and ``※`` notes. The price
of the rule: a lone one-kana interjection (``え？``, ``ん？``) is kept verbatim.
"""

from __future__ import annotations

import threading
import unicodedata
from typing import Any

from asmr_daemon.scripts.kana import KANA_RUN_RE, LONG_MARKS, SMALL_KANA, is_kana, to_hiragana
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
# Interjections that are words to translate (yes, no, hey, look...), in hiragana.
MEANINGFUL_INTERJECTIONS = frozenset({
    "はい", "ええ", "えぇ", "うん", "ううん", "いいえ", "いえ", "いや", "ねえ", "ねぇ", "ほら", "おい",
    "よし", "まあ", "さあ", "へえ", "ほう", "そう", "おはよう", "ありがとう", "おやすみ", "ごめん",
    "もしもし", "ただいま", "おかえり", "どうぞ", "どうも", "じゃあ", "ばいばい", "よいしょ",
})
# Parts of speech (SudachiPy's first field) whose tokens are words, not sounds.
_WORD_POS = frozenset({"名詞", "代名詞", "動詞", "形容詞", "助動詞", "助詞", "接続詞", "連体詞", "接頭辞", "接尾辞"})
_ONOMATOPOEIA_POS = frozenset({"副詞", "形状詞"})  # where the dictionary files ぺろぺろ and かりかり
_TORN = frozenset("ゃゅょャュョ")  # a token cannot start with these: the dictionary split a syllable


def _is_letter(ch: str) -> bool:
    return unicodedata.category(ch).startswith("L") and ch not in LONG_MARKS


def _core(chunk: str) -> str:
    """Kana chunk -> hiragana without small kana or long marks (``チュッ`` -> ``ち``)."""
    return "".join(h for h in map(to_hiragana, chunk) if h not in SMALL_KANA and h not in LONG_MARKS)


SOUND_SYLLABLES: frozenset[str] = frozenset(_core(s) for s in SOUND_SYLLABLES_SPELLED)


def has_letters(text: str) -> bool:
    """True if ``text`` has any letter (kana, kanji, Latin...), ``ー`` not counted."""
    return any(_is_letter(ch) for ch in text)


def _is_listed(core: str) -> bool:
    return any(core and len(core) % len(unit) == 0 and core == unit * (len(core) // len(unit))
               for unit in SOUND_SYLLABLES)


def _is_sound_shaped(core: str) -> bool:
    if len(set(core)) <= 1:
        return True  # "", "ふ", "ははは", "んん"
    if len(core) >= 3 and len(set(core[1:])) == 1:
        return True  # うふふ, えへへ, あはは
    return _is_listed(core)


def _kana_only(norm: str) -> bool:
    letters = [ch for ch in norm if _is_letter(ch)]
    return bool(letters) and all(is_kana(ch) for ch in letters)


class _Dictionary:
    """SudachiPy's tokenizer, loaded on first use and shared (its calls are serialised)."""

    def __init__(self) -> None:
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def tokens(self, text: str) -> list[Any]:
        with self._lock:
            if self._tokenizer is None:
                from sudachipy import Dictionary, SplitMode

                self._tokenizer = Dictionary().tokenizer(SplitMode.C)
            return list(self._tokenizer.tokenize(text))


_DICTIONARY = _Dictionary()


def _token_is_word(morpheme: Any) -> bool:
    surface = morpheme.surface()
    if morpheme.is_oov() or len([ch for ch in surface if ch not in LONG_MARKS]) < 2:
        return False
    pos = morpheme.part_of_speech()[0]
    if pos == "感動詞":
        forms = {"".join(map(to_hiragana, surface)), "".join(map(to_hiragana, morpheme.dictionary_form()))}
        return bool(forms & MEANINGFUL_INTERJECTIONS)
    if pos in _ONOMATOPOEIA_POS:
        return not _is_sound_shaped(_core(surface))
    return pos in _WORD_POS


def words_in(run: str) -> list[str]:
    """The real words the dictionary finds in one run of kana (empty for a sound)."""
    if _is_listed(_core(run)):
        return []
    tokens = _DICTIONARY.tokens(run)
    if any(m.surface()[:1] in _TORN for m in tokens):
        return []
    return [m.surface() for m in tokens if _token_is_word(m)]


def is_sound_line(text: str) -> bool:
    """True for onomatopoeia-only lines (``ふー…``, ``ちゅぱ…ちゅぅ…``, ``ぺろ、ぺろ``)."""
    norm = unicodedata.normalize("NFKC", text)  # half-width katakana -> full-width
    if not _kana_only(norm):
        return False
    runs = KANA_RUN_RE.findall(norm)
    if not all(_is_sound_shaped(_core(run)) for run in runs):
        return False
    return not any(words_in(run) for run in runs)


def decide(text: str) -> tuple[LineKind, str]:
    """The kind of a line and why: ``blank``, ``no letters``, ``sound`` (VERBATIM) or ``words``."""
    if not text.strip():
        return LineKind.VERBATIM, "blank"
    if not has_letters(text):
        return LineKind.VERBATIM, "no letters"
    if is_sound_line(text):
        return LineKind.VERBATIM, "sound"
    return LineKind.TEXT, "words"


def classify(text: str) -> LineKind:
    """TEXT if the line needs translating, VERBATIM if it is copied as is (rule above)."""
    return decide(text)[0]


def split_padding(text: str) -> tuple[str, str, str]:
    """``"  本文  "`` -> ``("  ", "本文", "  ")``: indentation and trailing spaces stay verbatim."""
    stripped = text.strip()
    if not stripped:
        return text, "", ""
    start = len(text) - len(text.lstrip())
    return text[:start], stripped, text[start + len(stripped) :]
