"""LRC lyrics (.lrc): metadata tags are structure, every other line is dialogue.

``[ti:...]``, ``[ar:...]``, ``[offset:...]``, ``[length: 2:50]`` (any ``[name:value]`` line) are
copied verbatim. Time tags are markup (``formats.markup``): a line's leading ``[mm:ss.xx]``
tags (one or several, and a leading word tag) are put back before the translation, word tags
inside the text (``[00:06.000]``, ``<00:02.500>``) are dropped from it. Players ignore lines they
cannot read, so nothing here is refused.
"""

from __future__ import annotations

import re

from asmr_daemon.scripts.formats.common import DIALOGUE, Cand, Parsed, structure

_META_RE = re.compile(r"^\s*\[[A-Za-z#][A-Za-z0-9_#-]*:[^\]]*\]\s*$")


def parse(lines: list[str], source_name: str) -> Parsed:
    cands: list[Cand] = []
    for raw in lines:
        if not raw.strip():
            cands.append(structure("blank"))
        elif _META_RE.match(raw):
            cands.append(structure("metadata tag"))
        else:
            cands.append(DIALOGUE)
    return Parsed(cands, [])
