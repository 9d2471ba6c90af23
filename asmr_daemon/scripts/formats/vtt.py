"""WebVTT (.vtt), read the way browsers read it (the WHATWG WebVTT parsing algorithm).

The file is the ``WEBVTT`` line, a header (lines up to the first blank line or timing line),
then blocks separated by blank lines. A block whose first line -- or second, after a cue
identifier -- contains ``-->`` is a cue: the timing line (with any settings, ``align:start
position:0%``), then its text, which ends at a blank line or at the next line containing
``-->`` (so cues need not be separated by blank lines). Blocks starting with NOTE, STYLE or
REGION are structure. Everything except cue text is copied verbatim.

What a browser skips is copied verbatim and reported: a cue whose timing does not parse (too
few digits, a broken arrow, a lone ``-->``), a block of text without a timing line. A
timestamp with a letter among its digits (``00:00:1d.890``) is a typo in a real cue, not
something to skip silently: the file is refused with its line, as is a file without the
``WEBVTT`` line, or one where every cue had to be skipped.
"""

from __future__ import annotations

import re

from asmr_daemon.scripts.formats.common import DIALOGUE, Cand, Parsed, malformed, structure
from asmr_daemon.scripts.model import Repair

HINT = "WebVTT cues need a timing line like 00:00:01.000 --> 00:00:04.500 (hours optional)"
_SPEC_SPACE = " \t\n\x0c\r"
_TIMESTAMP_RE = re.compile(r"(\d+):(\d+)(?::(\d+))?\.(\d+)")
_BLOCK_RE = re.compile(r"^(NOTE|STYLE|REGION)(?:[\s:]|$)")


def _timestamp(text: str, pos: int) -> int | None:
    """End position of a valid WebVTT timestamp at ``pos``, or None (spec: collect a timestamp)."""
    m = _TIMESTAMP_RE.match(text, pos)
    if m is None:
        return None
    first, second, third, frac = m.groups()
    if third is None and (len(first) != 2 or int(first) > 59):
        return None  # hours need minutes and seconds
    fields = (second,) if third is None else (second, third)
    if len(frac) != 3 or any(len(f) != 2 or int(f) > 59 for f in fields):
        return None
    return m.end()


def timing_ok(line: str) -> bool:
    """Spec: collect WebVTT cue timings and settings (settings themselves never fail)."""
    pos = len(line) - len(line.lstrip(_SPEC_SPACE))
    end = _timestamp(line, pos)
    if end is None:
        return False
    pos = end + len(line[end:]) - len(line[end:].lstrip(_SPEC_SPACE))
    if not line.startswith("-->", pos):
        return False
    pos += 3
    pos += len(line[pos:]) - len(line[pos:].lstrip(_SPEC_SPACE))
    return _timestamp(line, pos) is not None


def _has_typo(line: str) -> bool:
    """A letter among a timestamp's digits (``00:00:1d.890``), not in the settings after it."""
    start, _, rest = line.partition("-->")
    tokens = start.split() + rest.split()[:1]
    return any(":" in t and any(c.isdigit() for c in t) and any(c.isascii() and c.isalpha() for c in t)
               for t in tokens)


def parse(lines: list[str], source_name: str) -> Parsed:
    first = lines[0] if lines else ""
    if not (first.startswith("WEBVTT") and first[6:7] in ("", " ", "\t")):
        raise malformed(source_name, 1, "a WebVTT file must start with WEBVTT", first, 'put "WEBVTT" on the first line')
    cands: list[Cand] = [structure("header")]
    i = 1
    while i < len(lines) and lines[i] != "" and "-->" not in lines[i]:
        cands.append(structure("header"))
        i += 1
    repairs: list[Repair] = []
    cues = skipped = 0
    while i < len(lines):
        if lines[i] == "":
            cands.append(structure("blank"))
            i += 1
            continue
        end, kind = _block(lines, i, cands, repairs, source_name)
        cues += kind == "cue"
        skipped += kind == "skipped"
        i = end
    if skipped and not cues:
        first_skip = repairs[0]
        raise malformed(source_name, first_skip.line, f"no usable cue ({first_skip.message})",
                        lines[first_skip.line - 1], HINT)
    return Parsed(cands, repairs)


def _block_end(lines: list[str], start: int) -> tuple[int, int | None]:
    """(index after the block, index of its timing line or None) -- spec: collect a block."""
    timing: int | None = None
    i = start
    while i < len(lines) and lines[i] != "":
        count = i - start + 1
        if "-->" in lines[i]:
            if count == 1 or (count == 2 and timing is None):
                timing = i
            else:
                break  # the next cue starts here, no blank line between
        i += 1
    return i, timing


def _block(lines: list[str], start: int, cands: list[Cand], repairs: list[Repair],
           source_name: str) -> tuple[int, str]:
    """Append the block's Cands; returns (index after it, "cue" | "skipped" | "structure")."""
    end, timing = _block_end(lines, start)
    n = end - start
    if timing is not None:
        line = lines[timing]
        if timing_ok(line):
            cands.extend([structure("cue identifier")] * (timing - start))
            cands.append(structure("timing"))
            cands.extend([DIALOGUE] * (end - timing - 1))
            return end, "cue"
        if _has_typo(line):
            raise malformed(source_name, timing + 1, "bad WebVTT timing line", line, HINT)
        cands.extend([structure("skipped cue (bad timing)")] * n)
        repairs.append(Repair(timing + 1, "cue-skipped",
                              "timing line does not parse; browsers skip this cue; copied as is"))
        return end, "skipped"
    if m := _BLOCK_RE.match(lines[start]):
        cands.extend([structure(f"{m.group(1)} block")] * n)
        return end, "structure"
    cands.extend([structure("skipped block (no timing line)")] * n)
    repairs.append(Repair(start + 1, "block-skipped",
                          "text without a timing line; browsers skip it; copied as is"))
    return end, "skipped"
