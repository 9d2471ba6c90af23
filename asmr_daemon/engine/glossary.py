"""Per-work glossaries: ``日文<TAB>中文<TAB>备注`` lines (Sakura/GalTransl style).

Only entries that occur in a segment go into its prompt; afterwards the output is checked
for each entry's target.

Matching. Terms are matched with spaCy's ``PhraseMatcher`` (``attr="ORTH"``) on the
Japanese pipeline, so a term matches whole tokens: ``ゆう`` (a name) does not match inside
``ゆうべ``. Sudachi does not always split a text where a term ends, though (``春香さん``
may not contain the tokens of ``春香`` alone), so a term the matcher misses still matches as
a plain substring, *unless it is written only in hiragana*: short hiragana terms are the
ones that hide inside ordinary words, while names in katakana or kanji rarely do.

Which file. ``glossary_for_script`` merges: the configured glossary (``[prompt] glossary``)
applies to every script, and a ``glossary.tsv`` next to the script adds to it and overrides
entries with the same Japanese term (the work's own names win over general ones).
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asmr_daemon.engine.prompts import GlossaryEntry
from asmr_daemon.errors import ConfigError

SCRIPT_GLOSSARY_NAME = "glossary.tsv"
_HIRAGANA_ONLY = re.compile(r"[\u3041-\u309f]+")


@functools.lru_cache(maxsize=1)
def _nlp() -> tuple[Any, Any]:
    """The shared Japanese pipeline and the lock that guards it.

    SudachiPy's tokenizer must not run in two threads at once (the watch folder and the
    language server both look up terms), so when we borrow the segmenter's pipeline we also
    take the segmenter's lock.
    """
    try:
        from asmr_daemon.scripts import get_segmenter

        segmenter = get_segmenter()
        nlp = getattr(segmenter, "nlp", None)
        if nlp is not None:
            return nlp, getattr(segmenter, "lock", None) or getattr(segmenter, "_lock", None) or threading.Lock()
    except ImportError:
        pass
    import spacy

    return spacy.blank("ja"), threading.Lock()


@dataclass(frozen=True)
class Glossary:
    entries: tuple[GlossaryEntry, ...]
    name: str = "<glossary>"

    @classmethod
    def load(cls, path: Path) -> Glossary:
        """Read a UTF-8 (BOM allowed) TSV; ``#`` comments and blank lines are skipped.

        A later line with the same Japanese term replaces an earlier one.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"glossary {path} cannot be read: {exc}",
                              "it must be a UTF-8 text file") from exc
        entries: dict[str, GlossaryEntry] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = [f.strip() for f in raw.rstrip("\r\n").split("\t")]
            if len(fields) not in (2, 3) or not fields[0] or not fields[1]:
                raise ConfigError(f"{path}:{number}: malformed glossary line {raw!r}",
                                  "write 日文<TAB>中文, optionally <TAB>备注")
            entries[fields[0]] = GlossaryEntry(fields[0], fields[1], fields[2] if len(fields) == 3 else "")
        return cls(tuple(entries.values()), name=str(path))

    def merged(self, other: Glossary) -> Glossary:
        """This glossary plus ``other``; ``other`` wins for terms in both."""
        entries = {e.source: e for e in self.entries}
        entries.update((e.source, e) for e in other.entries)
        return Glossary(tuple(entries.values()), name=f"{self.name}+{other.name}")

    def find(self, text: str) -> list[GlossaryEntry]:
        """Entries whose term occurs in ``text``, in order of first appearance, no duplicates."""
        if not self.entries or not text:
            return []
        first: dict[str, int] = {}
        nlp, lock = _nlp()
        with lock:
            doc = nlp.make_doc(text)
            for _, start, _end in self._matcher(nlp)(doc):
                term = doc[start:_end].text
                first.setdefault(term, doc[start].idx)
        by_term = {e.source: e for e in self.entries}
        for entry in self.entries:
            if entry.source in first or _HIRAGANA_ONLY.fullmatch(entry.source):
                continue
            position = text.find(entry.source)
            if position >= 0:
                first[entry.source] = position
        found = [by_term[t] for t in first if t in by_term]
        return sorted(found, key=lambda e: first[e.source])

    def _matcher(self, nlp: Any) -> Any:
        # Built on first use and cached on the (frozen) instance; callers hold the pipeline's lock.
        matcher = self.__dict__.get("_matcher_cache")
        if matcher is None:
            from spacy.matcher import PhraseMatcher

            matcher = PhraseMatcher(nlp.vocab, attr="ORTH")
            matcher.add("GLOSSARY", [nlp.make_doc(e.source) for e in self.entries])
            object.__setattr__(self, "_matcher_cache", matcher)
        return matcher

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[GlossaryEntry]:
        return iter(self.entries)


def glossary_for_script(script_path: Path | None, configured: Path | None) -> Glossary | None:
    """The glossary for one script: configured one merged with ``glossary.tsv`` beside it
    (``script_path`` None: an editor's unsaved buffer, which has no folder).

    A configured path that does not exist is a configuration error; a missing per-script
    file is normal. None when neither exists.
    """
    result: Glossary | None = None
    if configured is not None:
        if not Path(configured).is_file():
            raise ConfigError(f"glossary {configured} does not exist", "check [prompt] glossary")
        result = Glossary.load(configured)
    if script_path is None:
        return result
    local = Path(script_path).parent / SCRIPT_GLOSSARY_NAME
    if local.is_file() and (configured is None or local.resolve() != Path(configured).resolve()):
        here = Glossary.load(local)
        result = here if result is None else result.merged(here)
    return result


def check_glossary_used(entries: Sequence[GlossaryEntry], output: str) -> str | None:
    """A problem naming the first term whose target is missing from ``output``, else None."""
    for entry in entries:
        if entry.target and entry.target not in output:
            return f"glossary term {entry.source} not used"
    return None
