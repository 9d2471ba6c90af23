"""What ``asmr-daemon inspect`` reports about one file: how it was read and, line by line, what
would reach the model. The JSON form is a contract (the README documents it; scripts rely on
it): keys are only ever added, under the same ``"version"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asmr_daemon.errors import InputError
from asmr_daemon.scripts.model import Document, LineKind
from asmr_daemon.scripts.reader import DEFAULT_MAX_BYTES, read_script
from asmr_daemon.scripts.segment import Segmenter

VERSION = 1
_NEWLINE_NAMES = {"\n": "lf", "\r\n": "crlf", "\r": "cr"}


def inspect_file(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, segmenter: Segmenter | None = None) -> dict[str, Any]:
    """The report for one file; a file that is refused gives ``"ok": false`` and the error."""
    try:
        doc = read_script(path, max_bytes=max_bytes, segmenter=segmenter)
    except InputError as exc:
        return {"path": str(path), "ok": False,
                "error": {"code": str(exc.code), "message": exc.message, "hint": exc.hint}}
    except OSError as exc:
        return {"path": str(path), "ok": False,
                "error": {"code": "unreadable", "message": f"{path}: {exc.strerror or exc}", "hint": None}}
    return {"path": str(path), "ok": True, "error": None, **document_report(doc)}


def document_report(doc: Document) -> dict[str, Any]:
    lines = [_line_report(doc, i) for i in range(len(doc.lines))]
    warnings = [{"line": line.index + 1,
                 "message": "markup between the words is not carried into the translation: " + " ".join(line.dropped)}
                for line in doc.lines if line.dropped]
    translate = [line for line in doc.lines if line.kind is LineKind.TEXT]
    return {
        "format": doc.format,
        "encoding": doc.encoding,
        "bom": doc.bom,
        "newline": "mixed" if doc.line_endings else _NEWLINE_NAMES[doc.newline],
        "final_newline": doc.final_newline,
        "summary": {"lines": len(doc.lines), "translate": len(translate), "keep": len(doc.lines) - len(translate),
                    "segments": sum(len(line.segments) for line in translate)},
        "lines": lines,
        "repairs": [{"line": r.line, "code": r.code, "message": r.message} for r in doc.repairs],
        "warnings": warnings,
    }


def _line_report(doc: Document, index: int) -> dict[str, Any]:
    line = doc.lines[index]
    if line.kind is not LineKind.TEXT:
        return {"line": index + 1, "decision": "keep", "reason": line.reason, "text": line.raw}
    return {"line": index + 1, "decision": "translate", "reason": line.reason, "text": line.raw,
            "segments": list(line.segments), "kept_before": line.prefix, "kept_after": line.suffix,
            "dropped": list(line.dropped)}


def report(paths: list[Path], **kwargs: Any) -> dict[str, Any]:
    return {"version": VERSION, "files": [inspect_file(path, **kwargs) for path in paths]}


def render_text(file: dict[str, Any]) -> list[str]:
    """The human-readable form of one file's report."""
    if not file["ok"]:
        error = file["error"]
        hint = f" ({error['hint']})" if error.get("hint") else ""
        return [f"refused [{error['code']}]: {error['message']}{hint}"]
    s = file["summary"]
    bom = " with BOM" if file["bom"] else ""
    out = [f"{file['path']}: {file['format']}, {file['encoding']}{bom}, {file['newline']} line endings; "
           f"{s['lines']} lines: {s['translate']} to translate ({s['segments']} segments for the model), "
           f"{s['keep']} kept"]
    for line in file["lines"]:
        out.append(f"{line['line']:>5}  {line['decision']:<9}  {line['reason']:<24}  {line['text']}")
        for segment in line.get("segments", ()):
            out.append(f"{'':>5}  {'':<9}  {'':<24}  -> {segment}")
    out += [f"  repair, line {r['line']}: {r['code']}: {r['message']}" for r in file["repairs"]]
    out += [f"  warning, line {w['line']}: {w['message']}" for w in file["warnings"]]
    return out
