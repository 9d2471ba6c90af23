"""Path -> Document: the size limit, decoding (or document extraction) and format detection."""

from __future__ import annotations

import stat
from pathlib import Path

from asmr_daemon.errors import EmptyFileError, FileTooLargeError, InputCode, InputError
from asmr_daemon.scripts.decoding import decode_bytes
from asmr_daemon.scripts.documents import read_document
from asmr_daemon.scripts.formats import DOCUMENT_FORMATS, format_for_path, parse_text
from asmr_daemon.scripts.model import Document
from asmr_daemon.scripts.segment import Segmenter

DEFAULT_MAX_BYTES = 5_000_000


def _too_large(name: str, size: int, max_bytes: int) -> FileTooLargeError:
    return FileTooLargeError(
        f"{name}: the file is {size} bytes, over the limit of {max_bytes} bytes",
        "split the script, or raise the max_file_bytes setting",
    )


def read_script(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, segmenter: Segmenter | None = None) -> Document:
    """Read, decode and parse a script file.

    The size is checked with ``stat`` before reading, so a huge file dropped into the inbox by
    mistake is never loaded into memory; the read is bounded too in case it grows meanwhile.
    """
    path = Path(path)
    name = str(path)
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise InputError(
            f"{name}: not a regular file", "only plain script files can be translated", code=InputCode.NOT_REGULAR
        )
    if st.st_size > max_bytes:
        raise _too_large(name, st.st_size, max_bytes)
    fmt = format_for_path(path)
    if fmt in DOCUMENT_FORMATS:
        text = read_document(path, fmt)
        if not text.strip():
            raise EmptyFileError(f"{name}: the document has no text", "put the script text in the document")
        return parse_text(text, fmt, source_name=name, segmenter=segmenter)
    with path.open("rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _too_large(name, len(data), max_bytes)
    decoded = decode_bytes(data, source_name=name)
    doc = parse_text(decoded.text, fmt, source_name=name, segmenter=segmenter)
    doc.encoding = decoded.encoding
    doc.bom = decoded.bom
    return doc

