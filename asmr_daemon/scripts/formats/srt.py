"""SubRip (.srt): structure first, lenient where players are, strict where a cue would be lost.

A line is structure when it is a timing line (``00:00:01,000 --> 00:00:04,500`` with anything
after it: positions ``X1:63 X2:223 Y1:43 Y2:58``), a cue number (digits before a timing line,
whether or not a blank line closed the previous cue), or blank. Everything in a cue after its
timing line is dialogue.

Repaired (the file is translated, the repair reported): timings players read although they are
not standard (1-digit hours, 1- or 2-digit milliseconds, whitespace before the timing), a cue
number with no blank line before it, lines before the first cue (copied verbatim).
Refused (with the line): a timing line that does not parse (``'.'`` before the milliseconds, a
letter, minutes or seconds over 59), a cue number without a timing line, a file without cues.
"""

from __future__ import annotations

import re

from asmr_daemon.scripts.formats.common import DIALOGUE, Cand, Parsed, malformed, structure
from asmr_daemon.scripts.model import Repair

_TIME = r"(\d{1,3}):(\d{1,2}):(\d{1,2})([,.])(\d{1,3})"
_TIMING_RE = re.compile(rf"^\s*{_TIME}[ \t]*-->[ \t]*{_TIME}(?:[ \t]+\S.*)?\s*$")
_TIMING_START_RE = re.compile(r"^\s*\d")  # inside a cue, "A --> B" is dialogue; "00:0l:00 --> ..." is not
_STANDARD_RE = re.compile(r"^\d{2}:\d{2}:\d{2},\d{3} --> \d{2}:\d{2}:\d{2},\d{3}(?:[ \t]|$)")
HINT = "SRT cues are: a number, a timing line like 00:00:01,000 --> 00:00:04,500, the text, a blank line"


def timing_problem(raw: str) -> str | None:
    """None for a usable timing line, else what is wrong with it."""
    m = _TIMING_RE.match(raw)
    if m is None:
        return "bad SRT timing line"
    if "." in (m.group(4), m.group(9)):
        return "bad SRT timing line ('.' before the milliseconds; SRT uses ',')"
    if any(int(m.group(k)) > 59 for k in (2, 3, 7, 8)):
        return "bad SRT timing line (minutes or seconds over 59)"
    return None


def _is_timing(raw: str) -> bool:
    return timing_problem(raw) is None


def parse(lines: list[str], source_name: str) -> Parsed:
    cands: list[Cand] = []
    repairs: list[Repair] = []
    state = "start"  # start | number (a timing must follow) | cue | gap (blank after a cue)
    cues = 0
    for n, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        nxt = lines[n] if n < len(lines) else ""
        if state == "number":
            if "-->" not in raw:
                raise malformed(source_name, n, "cue number without a timing line", raw, HINT)
            state = _timing(raw, n, source_name, cands, repairs)
            cues += 1
        elif "-->" in raw and (state != "cue" or _TIMING_START_RE.match(raw)):
            state = _timing(raw, n, source_name, cands, repairs)
            cues += 1
        elif not stripped:
            cands.append(structure("blank"))
            state = "gap" if state in ("cue", "gap") else state
        elif stripped.isdigit() and (state != "cue" or _is_timing(nxt)):
            if state == "cue":
                repairs.append(Repair(n, "cue-not-closed", "no blank line before this cue number; read as a new cue"))
            cands.append(structure("cue number"))
            state = "number"
        elif state in ("cue", "gap"):
            cands.append(DIALOGUE)  # after a blank line inside a cue: some tools write paragraph breaks
            state = "cue"
        else:
            cands.append(structure("before the first cue"))
            repairs.append(Repair(n, "block-copied", "not part of a cue (before the first timing line); copied as is"))
    if state == "number":
        raise malformed(source_name, len(lines) + 1, "cue number without a timing line", "", HINT)
    _refuse_if_unusable(lines, cands, repairs, cues, source_name)
    return Parsed(cands, repairs)


def _timing(raw: str, n: int, source_name: str, cands: list[Cand], repairs: list[Repair]) -> str:
    problem = timing_problem(raw)
    if problem is not None:
        raise malformed(source_name, n, problem, raw, HINT)
    if not _STANDARD_RE.match(raw):
        repairs.append(Repair(n, "timing-nonstandard",
                              "timing not written HH:MM:SS,mmm --> HH:MM:SS,mmm; read as players do, kept as written"))
    cands.append(structure("timing"))
    return "cue"


def _refuse_if_unusable(lines: list[str], cands: list[Cand], repairs: list[Repair], cues: int,
                        source_name: str) -> None:
    """No cue, or nothing but copied lines and empty cues: there is nothing to translate."""
    copied = [r for r in repairs if r.code == "block-copied"]
    has_text = any(c.dialogue and lines[i].strip() for i, c in enumerate(cands))
    if cues == 0 or (copied and not has_text):
        first = copied[0].line if copied else 1
        raw = lines[first - 1] if lines else ""
        raise malformed(source_name, first, "expected a cue number or timing line", raw, HINT)
