"""What every format parser returns and shares: one ``Cand`` per physical line.

A parser decides structure only: each line is either structure (VERBATIM, with the reason) or
a candidate for translation, with the structural head that stays verbatim before its dialogue
(an ASS line's fields). Markup and the words/sounds rule are applied afterwards, the same way
for every format (``formats.parse_text``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from asmr_daemon.errors import MalformedScriptError
from asmr_daemon.scripts.model import Repair

_NEWLINE_RE = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Cand:
    """One line as the format parser sees it."""

    dialogue: bool
    reason: str = ""
    head: str = ""


DIALOGUE = Cand(True, "words")


def structure(reason: str) -> Cand:
    return Cand(False, reason)


@dataclass(slots=True)
class Parsed:
    cands: list[Cand]
    repairs: list[Repair]


def malformed(source_name: str, lineno: int, problem: str, raw: str, hint: str) -> MalformedScriptError:
    return MalformedScriptError(f"{source_name}: line {lineno}: {problem}: {raw.strip()!r}", hint)


def split_lines(text: str) -> tuple[list[str], bool]:
    """Lines without their endings, and whether the text ended with a newline.

    Only CR, LF and CRLF end lines (``str.splitlines`` also splits on form feeds and U+2028,
    which editors and the line count users see do not).
    """
    lines = _NEWLINE_RE.split(text)
    final_newline = len(lines) > 1 and lines[-1] == ""
    if final_newline or lines == [""]:
        lines.pop()
    return lines, final_newline


def line_endings(text: str) -> tuple[str, ...]:
    """Each line's own ending, when the text mixes several kinds; else ``()``."""
    endings = _NEWLINE_RE.findall(text)
    if len(set(endings)) <= 1:
        return ()
    final_newline = text.endswith(("\n", "\r"))
    return tuple(endings) if final_newline else (*endings, "")
