"""Scripts that come as documents: ``.docx`` (python-docx) and ``.pdf`` with a text layer
(pdfminer.six), read into text lines in reading order and translated like a ``.txt``
(the output is ``NAME.zh.txt``, see ``writer.output_name``).

docx: body paragraphs and tables in document order, a table row by row, each cell's
paragraphs in turn; a line break inside a paragraph starts a new line. pdf: pdfminer's layout
analysis orders the text boxes of each page; one line per text line. Refused, with what to do:
a PDF without a text layer (scanned pages are images), text whose font has no Unicode mapping
(extracted as ``(cid:N)``), vertical writing (縦書き: the extractor cannot order its columns).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from asmr_daemon.errors import InputCode, InputError

_CID_RE = re.compile(r"\(cid:\d+\)")
_AS_TEXT = "export the script as .docx or .txt from the program that made it"


def _refuse(message: str, hint: str, code: InputCode = InputCode.MALFORMED) -> InputError:
    return InputError(message, hint, code=code)


def read_docx(path: Path) -> list[str]:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, KeyError, ValueError, OSError) as exc:
        raise _refuse(f"{path}: not a readable .docx document ({exc})", "save it again as .docx (Word 2007+)",
                      InputCode.BINARY) from None
    lines: list[str] = []
    _blocks(document, lines)
    return lines


def _blocks(container: Any, lines: list[str]) -> None:
    """Paragraphs and tables of a document or table cell, in order (tables row by row)."""
    from docx.table import Table

    for block in container.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                seen: set[int] = set()
                for cell in row.cells:
                    if id(cell._tc) not in seen:  # a merged cell is listed once per column it spans
                        seen.add(id(cell._tc))
                        _blocks(cell, lines)
        else:
            lines.extend(block.text.split("\n"))


def read_pdf(path: Path) -> list[str]:
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LAParams, LTTextBoxVertical, LTTextContainer
    from pdfminer.pdfparser import PDFSyntaxError

    lines: list[str] = []
    pages = 0
    try:
        for page in extract_pages(str(path), laparams=LAParams(detect_vertical=True)):
            pages += 1
            for element in page:
                if not isinstance(element, LTTextContainer):
                    continue
                if isinstance(element, LTTextBoxVertical) and element.get_text().strip():
                    raise _refuse(f"{path}: page {pages} has vertical text (縦書き); the PDF text extractor "
                                  "cannot put its columns in reading order", _AS_TEXT)
                lines.extend(element.get_text().rstrip("\n").split("\n"))
    except PDFSyntaxError as exc:
        raise _refuse(f"{path}: not a readable PDF ({exc})", _AS_TEXT, InputCode.BINARY) from None
    return _checked_pdf_lines(path, lines, pages)


def _checked_pdf_lines(path: Path, lines: list[str], pages: int) -> list[str]:
    text = "".join(lines)
    if not text.strip():
        raise _refuse(f"{path}: the PDF has no text layer ({pages} page(s) without any text: scanned images?); there is no "
                      "text to translate", "run OCR on it first (e.g. ocrmypdf -l jpn), or " + _AS_TEXT,
                      InputCode.EMPTY)
    if len(_CID_RE.findall(text)) * 8 > len(text):
        raise _refuse(f"{path}: the PDF's fonts have no Unicode mapping; its text comes out as (cid:N) codes",
                      _AS_TEXT, InputCode.ENCODING)
    return lines


def read_document(path: Path, fmt: str) -> str:
    """The document's text, one line per paragraph / text line, LF-terminated."""
    lines = read_docx(path) if fmt == "docx" else read_pdf(path)
    return "".join(line + "\n" for line in lines)
