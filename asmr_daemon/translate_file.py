"""One script file -> its translation file: the code path shared by the daemon's watch folder
and the one-shot ``translate`` command (read -> translate line by line -> write atomically).

Imports of the engine stay inside the function: importing this module must not pull in torch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from asmr_daemon.config import Settings
    from asmr_daemon.engine.engine import Engine
    from asmr_daemon.engine.requests import Priority


def translate_file(engine: Engine, src: Path, dest: Path, settings: Settings, *,
                   priority: Priority | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   cancel: threading.Event | None = None) -> Path:
    """Translate the script ``src`` into ``dest`` (written atomically: temp file + rename).

    Raises ``InputError`` (with ``.code``) when ``src`` is not a readable script; the glossary is
    ``[prompt] glossary`` merged with a ``glossary.tsv`` beside the script. Returns ``dest``.
    """
    from asmr_daemon.engine.glossary import glossary_for_script
    from asmr_daemon.engine.requests import Priority
    from asmr_daemon.pipeline import translate_document
    from asmr_daemon.scripts import read_script, write_translation

    doc = read_script(Path(src), max_bytes=settings.watch.max_file_bytes)
    glossary = glossary_for_script(Path(src), settings.prompt.glossary)
    results = translate_document(engine, doc, priority=Priority.BATCH if priority is None else priority,
                                 glossary=glossary, context_lines=settings.prompt.context_lines,
                                 progress=progress, cancel=cancel)
    return write_translation(doc, {index: line.text for index, line in results.items()}, Path(dest),
                             bilingual=settings.output.bilingual, encoding=settings.output.encoding,
                             newline=settings.output.newline)
