"""Cheap checks on one model output; a failing row is retried once with a repetition penalty,
then the source is kept and the problem reported.

Each check returns a short problem string or None. The definitions (kept in step with the
README):

* ``empty output``: nothing but whitespace.
* ``leaked special token``: ChatGLM2 control tokens (``[gMASK]``, ``[sMASK]``, ``[MASK]``,
  ``sop``, ``eop`` as separate words, ``<|...|>``), chat scaffolding (``[Round``, ``问：``,
  ``答：``) or our own prompt scaffolding (``原文：``, the context and glossary headers) in
  the output but not in the source.
* ``repetition``: a unit of 1-10 characters (not only punctuation or ー/～) repeated at least
  4 times in a row, and more than twice as often as the source repeats anything
  (``はぁはぁはぁはぁ`` -> ``哈啊哈啊哈啊哈啊`` is fine; 30 x ``我爱你`` is not).
* ``output too long``: more than 4 x the source's characters + 10.
* ``U+FFFD in the output``: the replacement character ``�`` (byte-fallback pieces that do not
  form valid UTF-8) when the source has none.
* ``leftover kana``: counting "full" kana only (hiragana/katakana letters except small kana
  ぁっゃ… and the long-vowel mark ー, so ちゅっ or はぁ counts as one), a run of 3 or more,
  or at least 2 that make up over 30 % of the output's letters. Single sounds such as あ, ん,
  っ inside Chinese text pass.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from asmr_daemon.engine.glossary import check_glossary_used
from asmr_daemon.engine.prompts import GlossaryEntry
from asmr_daemon.scripts.kana import LONG_MARKS, is_full_kana, is_kana

SPECIAL_MARKERS: tuple[str, ...] = (
    "[gMASK]", "[sMASK]", "[MASK]", "[Round", "问：", "答：",
    # Our own prompt scaffolding (prompts.py): context or glossary leaking into the answer.
    "原文：", "上文（仅供参考", "根据以下术语表",
)
_WORD_TOKENS = re.compile(r"(?<![A-Za-z])(?:sop|eop)(?![A-Za-z])|<\|[^|<>]{0,40}\|>")

_FILLER = set("ーｰ～〜")


def _is_letter(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LN"


def leftover_kana(output: str) -> bool:
    full = run = longest = 0
    for ch in output:
        if is_kana(ch) or ch in LONG_MARKS:  # ー does not end a run of kana
            if is_full_kana(ch):
                full += 1
                run += 1
                longest = max(longest, run)
        else:
            run = 0
    letters = sum(1 for ch in output if _is_letter(ch))
    return longest >= 3 or (full >= 2 and full > 0.3 * letters)


def max_repeats(text: str, max_unit: int = 10) -> int:
    """The most consecutive repetitions of any 1..max_unit character unit (1 = no repetition)."""
    best = 1
    for size in range(1, max_unit + 1):
        for match in re.finditer(rf"(.{{{size}}})\1+", text, flags=re.DOTALL):
            unit = match.group(1)
            if all(ch in _FILLER or not _is_letter(ch) for ch in unit):
                continue  # "……", "——", "ーー": punctuation runs are style, not degeneration
            best = max(best, len(match.group(0)) // size)
    return best


def leaked_special_token(source: str, output: str, special_tokens: Sequence[str] = ()) -> str | None:
    for marker in (*SPECIAL_MARKERS, *special_tokens):
        if marker and marker in output and marker not in source:
            return marker
    match = _WORD_TOKENS.search(output)
    if match and match.group(0) not in source:
        return match.group(0)
    return None


def check_translation(source: str, output: str, *, special_tokens: Sequence[str] = ()) -> str | None:
    """None when ``output`` looks like a usable translation of ``source``, else a short problem."""
    if not output.strip():
        return "empty output"
    token = leaked_special_token(source, output, special_tokens)
    if token is not None:
        return f"leaked special token {token}"
    if "\ufffd" in output and "\ufffd" not in source:
        return "U+FFFD in the output"
    repeats = max_repeats(output)
    if repeats >= 4 and repeats > 2 * max_repeats(source):
        return "repetition"
    if len(output) > 4 * len(source) + 10:
        return "output too long"
    if leftover_kana(output):
        return "leftover kana"
    return None


def check_all(source: str, output: str, *, glossary: Sequence[GlossaryEntry] = (),
              special_tokens: Sequence[str] = ()) -> str | None:
    """``check_translation`` then the glossary check: what the engine runs on every row."""
    return (check_translation(source, output, special_tokens=special_tokens)
            or check_glossary_used(glossary, output))
