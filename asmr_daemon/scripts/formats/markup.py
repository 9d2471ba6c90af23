"""Inline markup: what in a line of dialogue is words for the model and what is markup.

Per format, markup is (``TAGS``):

* srt: HTML-like tags (``<i>``, ``</i>``, ``<font color="red">``, also sloppy ``< /  i >``) and
  ASS-style override blocks ``{\\an8}``;
* vtt: every ``<...>`` (spans ``<c.yellow>``, voices ``<v 姉>``, ``<i>``, ruby ``<ruby>`` and
  ``<rt>``, inline timestamps ``<00:00:17.500>``); the reading inside ``<rt>…</rt>`` is markup too;
* lrc: time tags ``[mm:ss.xx]``, word tags ``<mm:ss.xx>`` and ``{mm:ss.xx}``;
* ass: override blocks ``{...}`` and the line breaks ``\\N``, ``\\n``, ``\\h``.

The words between the markup are given to the model as one sentence (tags dropped, a line break
read as a space). Markup before the first word and after the last one is put back around the
translation (``<v 姉>``, ``{\\an8}``, ``<i>…</i>``, an lrc line's leading timestamps); markup
between words cannot survive a translation (the words move) and is dropped from the translated
line, as is a leading tag whose closing tag sat between the words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TIME = r"\d{1,3}:\d{1,2}(?:[.:]\d{1,3})?"
TAGS: dict[str, re.Pattern[str]] = {
    "srt": re.compile(r"<\s*/?\s*[A-Za-z][^<>]*>|\{\\[^{}]*\}"),
    "vtt": re.compile(r"<[^<>]*(?:>|$)"),
    "lrc": re.compile(rf"\[{_TIME}\]|<{_TIME}>|\{{{_TIME}\}}"),
    "ass": re.compile(r"\{[^{}]*\}|\\[Nnh]"),
}
_BREAKS = frozenset({"\\N", "\\n", "\\h"})
_NAME_RE = re.compile(r"<\s*(/?)\s*([A-Za-z][A-Za-z0-9]*)")
_SPACES_RE = re.compile(r"[ \t]{2,}")


@dataclass(frozen=True, slots=True)
class Split:
    """``prefix + words + suffix`` is what a translated line is built around."""

    prefix: str
    words: str
    suffix: str
    dropped: tuple[str, ...] = ()


def _tag_name(tag: str) -> tuple[bool, str] | None:
    """``(closing, name)`` of an HTML-like tag; None for timestamps, ``{...}`` and breaks."""
    m = _NAME_RE.match(tag)
    return (m.group(1) == "/", m.group(2).lower()) if m else None


def _tokens(text: str, pattern: re.Pattern[str]) -> list[tuple[bool, str]]:
    """``(is_markup, piece)`` in order; the pieces join back to ``text``."""
    out: list[tuple[bool, str]] = []
    pos = 0
    for m in pattern.finditer(text):
        if m.start() > pos:
            out.append((False, text[pos : m.start()]))
        if m.group(0):
            out.append((True, m.group(0)))
        pos = m.end()
    if pos < len(text):
        out.append((False, text[pos:]))
    return out


def _inner_words(inner: list[tuple[bool, str]]) -> tuple[str, list[str]]:
    """The words of the middle part (tags dropped, breaks as spaces, ruby readings skipped)."""
    words: list[str] = []
    dropped: list[str] = []
    in_reading = False
    for is_tag, piece in inner:
        if not is_tag:
            if in_reading:
                dropped.append(piece)
            else:
                words.append(piece)
            continue
        dropped.append(piece)
        name = _tag_name(piece)
        if name is not None and name[1] == "rt":
            in_reading = not name[0]
        elif piece in _BREAKS:
            words.append(" ")
    return "".join(words), dropped


def _balance(lead: list[str], trail: list[str], dropped: list[str]) -> tuple[list[str], list[str]]:
    """Drop leading openers whose closer was dropped, and trailing closers whose opener was."""
    dropped_names = [n for n in map(_tag_name, dropped) if n is not None]
    closed_inside = {name for closing, name in dropped_names if closing}
    opened_inside = {name for closing, name in dropped_names if not closing}
    keep_lead, keep_trail = [], []
    for tag in lead:
        name = _tag_name(tag)
        if name is not None and not name[0] and name[1] in closed_inside:
            dropped.append(tag)
        else:
            keep_lead.append(tag)
    for tag in trail:
        name = _tag_name(tag)
        if name is not None and name[0] and name[1] in opened_inside:
            dropped.append(tag)
        else:
            keep_trail.append(tag)
    return keep_lead, keep_trail


def split_markup(text: str, fmt: str) -> Split:
    """Cut ``text`` (one line's dialogue) into kept prefix, words for the model and kept suffix."""
    pattern = TAGS.get(fmt)
    tokens = _tokens(text, pattern) if pattern else [(False, text)] if text else []
    wordy = [i for i, (is_tag, piece) in enumerate(tokens) if not is_tag and piece.strip()]
    if not wordy:
        return Split(text, "", "")
    first, last = wordy[0], wordy[-1]
    lead = [piece for _, piece in tokens[:first]]
    trail = [piece for _, piece in tokens[last + 1 :]]
    words, dropped = _inner_words(tokens[first : last + 1])
    if dropped:
        lead, trail = _balance(lead, trail, dropped)
        words = _SPACES_RE.sub(" ", words)
    stripped = words.strip()
    start = len(words) - len(words.lstrip())
    head, tail = words[:start], words[start + len(stripped) :]
    return Split("".join(lead) + head, stripped, tail + "".join(trail), tuple(dropped))


def has_markup(text: str, fmt: str) -> bool:
    """True when ``text`` contains markup of ``fmt`` (what must never reach the model)."""
    pattern = TAGS.get(fmt)
    return bool(pattern and pattern.search(text))
