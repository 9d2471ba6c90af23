"""The data model every other package codes against: a script is a list of lines.

One ``Line`` per physical line of the file is what keeps translations line-aligned by
construction: the writer replaces the ``body`` of TEXT lines and copies everything else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class LineKind(enum.Enum):
    """Whether a line is sent to the translator or copied unchanged."""

    TEXT = "text"
    VERBATIM = "verbatim"


@dataclass(frozen=True, slots=True)
class Line:
    """One physical line of a script.

    For TEXT lines ``body`` is exactly the words the model gets; the prefix holds what must
    survive translation untouched before them (indentation, an ASS line's fields, lrc timestamp
    tags, markup that leads or wraps the text), the suffix what follows them (closing tags,
    trailing whitespace). A translated line is ``prefix + translation + suffix``. When the line
    had no markup inside its words, ``prefix + body + suffix == raw``; otherwise the inner
    markup is listed in ``dropped`` (it cannot survive a translation). ``segments`` are the
    sentences of ``body`` (``"".join(segments) == body``). VERBATIM lines have an empty body and
    no segments; ``raw`` is written back as is. ``reason`` says why a line is what it is
    (``"words"``, ``"timing"``, ``"sound"``...), for ``inspect``.
    """

    index: int
    raw: str
    kind: LineKind
    prefix: str = ""
    body: str = ""
    suffix: str = ""
    segments: tuple[str, ...] = ()
    reason: str = ""
    dropped: tuple[str, ...] = ()

    @property
    def is_text(self) -> bool:
        return self.kind is LineKind.TEXT


@dataclass(frozen=True, slots=True)
class Repair:
    """Something the parser repaired or skipped instead of refusing the file (a player would
    tolerate it): reported to the user in the review report, the CLI and the editor.

    ``line`` is 1-based (as editors and users count); ``code`` is a short stable identifier
    (e.g. ``"timing-repaired"``, ``"block-copied"``); ``message`` says what happened in words.
    """

    line: int
    code: str
    message: str


@dataclass(slots=True)
class Document:
    """A decoded, parsed script plus what is needed to write it back the same way.

    ``encoding``/``bom`` describe the source bytes (``"utf-8"`` for text that never was bytes,
    e.g. an editor buffer); ``newline`` is the dominant line ending; ``final_newline`` says
    whether the text ended with one, so rendering reproduces the file exactly. ``line_endings``
    holds each line's own ending when the text mixed several (a file with CR, LF and CRLF is
    written back with each line's own), else it is empty and ``newline`` ends every line.
    """

    lines: list[Line]
    format: str
    encoding: str = "utf-8"
    newline: str = "\n"
    bom: bool = False
    source_name: str = "<text>"
    final_newline: bool = True
    repairs: list[Repair] = field(default_factory=list)
    line_endings: tuple[str, ...] = ()

    @property
    def text_lines(self) -> list[Line]:
        """The lines that need translating, in file order."""
        return [line for line in self.lines if line.kind is LineKind.TEXT]
