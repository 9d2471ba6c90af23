"""Training data as JSON Lines, and the ways to get it: corrections, bilingual scripts, aligned files.

One pair per line::

    {"source": "おやすみなさい。", "target": "晚安。"}
    {"source": "…", "target": "…", "context": [{"source": "…", "translation": "…"}], "glossary": [{"source": "耳かき", "target": "掏耳朵", "note": ""}]}

``context`` entries may also be ``[source, translation]`` or a bare source string; ``glossary``
entries ``[source, target]`` or ``[source, target, note]``. Files are written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from asmr_daemon.engine.prompts import ContextLine, GlossaryEntry
from asmr_daemon.errors import DatasetError
from asmr_daemon.training_data import TrainingPair

# ---------------------------------------------------------------------------------------------
# JSON Lines
# ---------------------------------------------------------------------------------------------


def pair_to_record(pair: TrainingPair) -> dict[str, Any]:
    record: dict[str, Any] = {"source": pair.source, "target": pair.target}
    if pair.context:
        record["context"] = [{"source": c.source, "translation": c.translation} for c in pair.context]
    if pair.glossary:
        record["glossary"] = [{"source": g.source, "target": g.target, "note": g.note} for g in pair.glossary]
    return record


def record_to_pair(record: Any, where: str) -> TrainingPair:
    """One parsed JSON line -> TrainingPair; DatasetError naming ``where`` (``file:line``) if wrong."""
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for key in ("source", "target"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise DatasetError(f"{where}: {key!r} must be a non-empty string")
    unknown = sorted(set(record) - {"source", "target", "context", "glossary"})
    if unknown:
        raise DatasetError(f"{where}: unknown field(s) {', '.join(unknown)}",
                           "a pair has source, target and optionally context and glossary")
    return TrainingPair(
        source=record["source"],
        target=record["target"],
        context=tuple(_context_line(c, where) for c in _list(record, "context", where)),
        glossary=tuple(_glossary_entry(g, where) for g in _list(record, "glossary", where)),
    )


def _list(record: dict[str, Any], key: str, where: str) -> list[Any]:
    value = record.get(key) or []
    if not isinstance(value, list):
        raise DatasetError(f"{where}: {key!r} must be a list")
    return value


def _context_line(value: Any, where: str) -> ContextLine:
    if isinstance(value, str):
        return ContextLine(value)
    if isinstance(value, dict) and isinstance(value.get("source"), str):
        translation = value.get("translation")
        if translation is None or isinstance(translation, str):
            return ContextLine(value["source"], translation)
    if isinstance(value, list) and 1 <= len(value) <= 2 and all(isinstance(v, str) or v is None for v in value):
        return ContextLine(value[0], value[1] if len(value) > 1 else None)
    raise DatasetError(f"{where}: a context entry must be {{\"source\", \"translation\"}}, [source, translation] "
                       f"or a string, not {value!r}")


def _glossary_entry(value: Any, where: str) -> GlossaryEntry:
    if isinstance(value, dict) and isinstance(value.get("source"), str) and isinstance(value.get("target"), str):
        return GlossaryEntry(value["source"], value["target"], str(value.get("note") or ""))
    if isinstance(value, list) and 2 <= len(value) <= 3 and all(isinstance(v, str) for v in value):
        return GlossaryEntry(*value)
    raise DatasetError(f"{where}: a glossary entry must be {{\"source\", \"target\", \"note\"}} or "
                       f"[source, target, note], not {value!r}")


def read_dataset(path: Path) -> list[TrainingPair]:
    """Every pair of a JSON Lines file (blank lines skipped); DatasetError naming the bad line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"data set {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read data set {path}: {exc}") from None
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DatasetError(f"{path}:{number}: not valid JSON: {exc}") from None
        pairs.append(record_to_pair(record, f"{path}:{number}"))
    if not pairs:
        raise DatasetError(f"data set {path} has no pairs")
    return pairs


def dumps_dataset(pairs: Iterable[TrainingPair]) -> str:
    return "".join(json.dumps(pair_to_record(p), ensure_ascii=False) + "\n" for p in pairs)


def write_dataset(path: Path, pairs: Iterable[TrainingPair]) -> int:
    """Write pairs as JSON Lines atomically (temp file + rename); returns how many."""
    from asmr_daemon.watch.outputs import atomic_write_text

    pairs = list(pairs)
    atomic_write_text(Path(path), dumps_dataset(pairs))
    return len(pairs)


def deduplicate(pairs: Iterable[TrainingPair]) -> list[TrainingPair]:
    """One pair per prompt (source, context, glossary): the last one wins, kept at its first place.

    Two different targets for the same prompt would teach the model to hesitate between them; a
    later correction is what the translator meant last.
    """
    chosen: dict[tuple[Any, ...], TrainingPair] = {}
    for pair in pairs:
        chosen[(pair.source.strip(), pair.context, pair.glossary)] = pair
    return list(chosen.values())


# ---------------------------------------------------------------------------------------------
# Sources of pairs
# ---------------------------------------------------------------------------------------------


def pairs_from_memory(memory: Any, *, include_accepted: bool = False) -> list[TrainingPair]:
    """Human corrections from the translation memory (plus accepted model outputs when asked),
    deduplicated; a correction always beats a model output for the same source."""
    corrected = [TrainingPair(source, target) for source, target in memory.corrections()]
    accepted: list[TrainingPair] = []
    if include_accepted:
        fixed = {p.source.strip() for p in corrected}
        accepted = [TrainingPair(s, t) for s, t in memory.accepted()
                    if s.strip() not in fixed and t.strip() and t.strip() != s.strip()]
    return deduplicate([*accepted, *corrected])


def pairs_from_bilingual(doc: Any, *, name: str, skip_unpaired: bool = False) -> list[TrainingPair]:
    """Pairs of a bilingual script (each Japanese line followed by its Chinese line).

    A Japanese line without a translation under it is an error naming the line, unless
    ``skip_unpaired`` (then it is left out).
    """
    from asmr_daemon.scripts.bilingual import bilingual_pairs, unpaired_sources

    lonely = unpaired_sources(doc)
    if lonely and not skip_unpaired:
        first = lonely[0]
        more = f" (and {len(lonely) - 1} more)" if len(lonely) > 1 else ""
        raise DatasetError(f"{name}:{first.index + 1}: Japanese line {first.body!r} has no Chinese line under it{more}",
                           "add its translation, or pass --skip-unpaired")
    pairs = [TrainingPair(ja.body.strip(), zh.body.strip()) for ja, zh in bilingual_pairs(doc)]
    if not pairs:
        raise DatasetError(f"{name}: no Japanese line followed by a Chinese line",
                           "for a Japanese file and its translation, pass both files")
    return pairs


def pairs_from_aligned(source_doc: Any, target_doc: Any, *, source_name: str, target_name: str) -> list[TrainingPair]:
    """Pairs from a script and its translation: the n-th TEXT line of one with the n-th of the other."""
    src, dst = source_doc.text_lines, target_doc.text_lines
    if len(src) != len(dst):
        raise DatasetError(f"{source_name} has {len(src)} text lines but {target_name} has {len(dst)}; "
                           f"{_divergence(src, dst, source_name, target_name)}",
                           "the translation must have one line per text line, in the same order")
    return [TrainingPair(a.body.strip(), b.body.strip()) for a, b in zip(src, dst, strict=True)]


def _divergence(src: Sequence[Any], dst: Sequence[Any], source_name: str, target_name: str) -> str:
    """Where two files stop lining up, for the error message."""
    for a, b in zip(src, dst):
        if a.index != b.index:
            return (f"they stop lining up at {source_name}:{a.index + 1} ({a.body!r}) "
                    f"/ {target_name}:{b.index + 1} ({b.body!r})")
    longer, name = (src, source_name) if len(src) > len(dst) else (dst, target_name)
    extra = longer[min(len(src), len(dst))]
    return f"the first line without a partner is {name}:{extra.index + 1} ({extra.body!r})"
