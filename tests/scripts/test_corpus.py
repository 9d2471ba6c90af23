"""Every real-world file of ``../shared/corpus`` gives the outcome its MANIFEST.tsv names, and
every file that is read keeps the invariants a translator relies on.

The corpus (web-platform-tests' WebVTT tests, the test data of pysubs2, srt, webvtt-py, lrc
parsers, chardet's Japanese samples, Aozora texts) stays in ``../shared``, beside the checkout;
``expect`` is ``ok`` / ``spec-ok`` (must be read), ``error`` or ``error:CODE`` (must be refused,
with that code), ``either``.
"""

from __future__ import annotations

import codecs
import csv
import re
from pathlib import Path

import pytest

from asmr_daemon.errors import InputError
from asmr_daemon.scripts import Document, LineKind, read_script, render
from asmr_daemon.scripts.formats.markup import has_markup
from asmr_daemon.scripts.writer import write_translation

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
MANIFEST = CORPUS / "MANIFEST.tsv"
FAKE = "訳文"  # a "translation" every source encoding can store, for encoding="original"
_ENDINGS = re.compile(r"\r\n|\r|\n")
# Independent of the parsers: what must never reach the model.
_TIMESTAMP = re.compile(r"\d+:\d{1,2}[.,:]\d+|-->")
_ANY_TAG = {"srt": re.compile(r"<\s*/?\s*[A-Za-z][^<>]*>|\{\\"), "vtt": re.compile(r"<[^<>]*>"),
            "lrc": re.compile(r"[\[<{]\d+:\d+"), "ass": re.compile(r"\{[^}]*\}|\\N")}


def _rows() -> list[dict[str, str]]:
    if not MANIFEST.is_file():
        return []
    with MANIFEST.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


ROWS = _rows()
pytestmark = pytest.mark.skipif(not ROWS, reason=f"the shared corpus is not beside the checkout ({MANIFEST} missing)")


def _true_text(data: bytes, encoding: str) -> str:
    if encoding in ("utf-16-le", "utf-16-be") and data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        data = data[2:]
    return data.decode(encoding)


def test_the_corpus_is_all_there() -> None:
    assert len(ROWS) >= 68
    for row in ROWS:
        assert (CORPUS / row["local_name"]).stat().st_size > 0 or row["expect"].startswith("error"), row


@pytest.mark.parametrize("row", ROWS, ids=[row["local_name"] for row in ROWS])
def test_corpus_file(row: dict[str, str], segmenter: object, tmp_path: Path) -> None:
    path = CORPUS / row["local_name"]
    expect = row["expect"]
    try:
        doc = read_script(path)
    except InputError as exc:
        assert expect.startswith("error") or expect == "either", f"refused: {exc}"
        if ":" in expect:
            assert exc.code == expect.split(":", 1)[1], str(exc)
        assert str(path) in exc.message  # says which file
        return
    assert expect in ("ok", "spec-ok", "either"), f"read, but MANIFEST says {expect}: {row['why']}"
    _check_invariants(doc, path.read_bytes(), row["true_encoding"], tmp_path)


def _check_invariants(doc: Document, data: bytes, true_encoding: str, tmp_path: Path) -> None:
    source = _true_text(data, true_encoding)
    assert render(doc, {}) == source  # decoded exactly as the true encoding reads it
    src_lines = _ENDINGS.split(source)
    fake = {line.index: FAKE for line in doc.text_lines}
    out = render(doc, fake)
    out_lines = _ENDINGS.split(out)
    assert len(out_lines) == len(src_lines)  # same line count and final newline
    assert _ENDINGS.findall(out) == _ENDINGS.findall(source)  # same newline, line by line
    for line, before, after in zip(doc.lines, src_lines, out_lines, strict=False):
        if line.kind is LineKind.VERBATIM:
            assert after == before
        else:
            assert FAKE in after and after.startswith(line.prefix) and after.endswith(line.suffix)
        if doc.format in ("srt", "vtt") and "-->" in before and before.strip()[:1].isdigit():
            assert line.kind is LineKind.VERBATIM, f"timing line {line.index + 1} sent to the model: {before!r}"
        for segment in line.segments:
            if doc.format != "txt":  # in plain text a time is just text
                assert not _TIMESTAMP.search(segment), f"line {line.index + 1}: timing in {segment!r}"
            tag = _ANY_TAG.get(doc.format)
            assert not (tag and tag.search(segment)), f"line {line.index + 1}: markup in {segment!r}"
            assert not has_markup(segment, doc.format)
    # encoding = "original": the structural lines come back byte for byte in the source encoding.
    dest = write_translation(doc, fake, tmp_path / "out", encoding="original")
    written = _true_text(dest.read_bytes(), true_encoding)
    assert written == out
