"""Advanced SubStation Alpha (.ass, .ssa: Aegisub, the fansub standard).

Only the Text field of ``Dialogue:`` lines in ``[Events]`` is dialogue; ``[Script Info]``, the
styles (font names can be Japanese), ``Format:``, ``Comment:`` and every other line are copied
verbatim, and so are the Dialogue fields before Text. The Text field is the last one: the
``Format:`` line of ``[Events]`` says how many fields come before it (9 when there is none).
Override blocks ``{\\an8}`` and ``\\N`` are markup (``formats.markup``); a line in drawing
mode (``{\\p1}m 0 0 l ...``) is vector graphics, not words, and stays verbatim.
"""

from __future__ import annotations

import re

from asmr_daemon.scripts.formats.common import Cand, Parsed, malformed, structure
from asmr_daemon.scripts.model import Repair

HINT = "an ASS/SSA script has a [Script Info] section and Dialogue: lines under [Events]"
_DRAWING_RE = re.compile(r"\{[^}]*\\p[1-9]")
_DEFAULT_FIELDS = 10


def _text_start(raw: str, fields: int) -> int | None:
    """Offset of the Text field in a ``Dialogue:`` line, or None when it has too few fields."""
    pos = raw.index(":") + 1
    for _ in range(fields - 1):
        comma = raw.find(",", pos)
        if comma < 0:
            return None
        pos = comma + 1
    return pos


def parse(lines: list[str], source_name: str) -> Parsed:
    cands: list[Cand] = []
    repairs: list[Repair] = []
    section = ""
    fields = _DEFAULT_FIELDS
    seen_info = False
    for n, raw in enumerate(lines, start=1):
        stripped = raw.strip().lstrip("\ufeff")
        key = stripped.partition(":")[0].strip().lower() if ":" in stripped else ""
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped.lower()
            seen_info = seen_info or section == "[script info]"
            cands.append(structure("section header"))
        elif not stripped:
            cands.append(structure("blank"))
        elif section != "[events]" or key not in ("dialogue", "format"):
            cands.append(structure("comment" if stripped.startswith((";", "!:")) else f"{section or 'header'} line"))
        elif key == "format":
            fields = len(raw.split(":", 1)[1].split(","))
            cands.append(structure("format line"))
        else:
            start = _text_start(raw, fields)
            if start is None:
                cands.append(structure("dialogue without a Text field"))
                repairs.append(Repair(n, "block-copied", f"Dialogue line with fewer than {fields} fields; copied as is"))
            elif _DRAWING_RE.search(raw, start):
                cands.append(structure("vector drawing"))
            else:
                cands.append(Cand(True, "words", raw[:start]))
    if not seen_info and not any(c.dialogue for c in cands):
        raise malformed(source_name, 1, "not an ASS/SSA script (no [Script Info], no Dialogue lines)",
                        lines[0] if lines else "", HINT)
    return Parsed(cands, repairs)
