"""Writing translations (and any other file the daemon owns) atomically.

A reader -- the user's editor, a sync client, the watcher itself -- must only ever see the old
file or the complete new one, and a crash must not leave a half-written output. So: render and
encode everything in memory first (encoding errors happen before any file exists), write a
temp file in the destination directory (``os.replace`` is only atomic within a filesystem),
fsync it, rename it over the destination, then fsync the directory so the rename survives a
power cut.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from asmr_daemon.errors import EncodingError
from asmr_daemon.scripts.formats import DOCUMENT_FORMATS, render
from asmr_daemon.scripts.model import Document

_NEWLINES = {"lf": "\n", "crlf": "\r\n"}
_NEWLINE_RE = re.compile(r"\r\n|\r|\n")


def output_name(name: str) -> str:
    """The outbox naming contract, in one place: ``"a.txt"`` -> ``"a.zh.txt"``, ``"noext"`` ->
    ``"noext.zh"``; documents become text: ``"a.docx"`` / ``"a.pdf"`` -> ``"a.zh.txt"``."""
    dot = name.rfind(".")
    if dot <= 0:  # no extension, or a dotfile like ".script"
        return f"{name}.zh"
    ext = name[dot:]
    if ext[1:].lower() in DOCUMENT_FORMATS:
        ext = ".txt"
    return f"{name[:dot]}.zh{ext}"


def atomic_write_bytes(dest: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``dest`` with ``data`` atomically; creates parent directories (0700).

    The temp file is ``.NAME.tmp-XXXXXXXX`` (``.asmr.tmp-XXXXXXXX`` for a long name) next to
    ``dest`` and is removed on any failure, leaving ``dest`` as it was. Private by default (0600,
    DESIGN §11): outputs, reports and state files are the user's alone unless configured otherwise.
    """
    dest = Path(dest)
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    while True:
        token = secrets.token_hex(4)
        tmp = dest.parent / f".{dest.name}.tmp-{token}"
        if len(os.fsencode(tmp.name)) > 255:  # a long name: the temp name must still fit NAME_MAX
            tmp = dest.parent / f".asmr.tmp-{token}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(dest.parent)


def _fsync_dir(directory: Path) -> None:
    # Not every platform/filesystem can open or fsync a directory; the data itself is safe.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def encode_text(text: str, encoding: str, bom: bool, *, dest_name: str) -> bytes:
    """Encode for writing; a BOM is written when ``bom`` (``utf-8-sig`` adds its own)."""
    if bom and not encoding.endswith("-sig"):
        text = "\ufeff" + text
    try:
        return text.encode(encoding)
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end]
        lineno = len(_NEWLINE_RE.split(exc.object[: exc.start]))
        raise EncodingError(
            f"{dest_name}: cannot write {bad!r} (line {lineno}) in the encoding {encoding}",
            'write the translation as UTF-8 (encoding="utf-8", the default)',
        ) from None
    except LookupError:
        raise ValueError(f"unknown output encoding {encoding!r}") from None


def encode_translation(
    doc: Document,
    translations: Mapping[int, str],
    *,
    bilingual: bool = False,
    encoding: str = "utf-8",
    newline: str = "original",
    dest_name: str = "output",
) -> bytes:
    """Render ``doc`` with ``translations`` into the bytes of the output file.

    ``encoding``: ``"utf-8"`` (default, no BOM), ``"original"`` (the source codec and BOM; fails
    with EncodingError when e.g. Chinese does not fit CP932) or any Python codec name.
    ``newline``: ``"original"``, ``"lf"`` or ``"crlf"``.
    """
    nl: str | None
    if newline == "original":
        nl = None  # each line's own ending
    elif newline in _NEWLINES:
        nl = _NEWLINES[newline]
    else:
        raise ValueError(f"newline must be 'original', 'lf' or 'crlf', not {newline!r}")
    codec, bom = (doc.encoding, doc.bom) if encoding == "original" else (encoding, False)
    text = render(doc, translations, bilingual=bilingual, newline=nl)
    return encode_text(text, codec, bom, dest_name=dest_name)


def write_translation(
    doc: Document,
    translations: Mapping[int, str],
    dest: Path,
    *,
    bilingual: bool = False,
    encoding: str = "utf-8",
    newline: str = "original",
) -> Path:
    """Render ``doc`` with ``translations`` (see ``encode_translation``) and write it atomically to
    ``dest``; returns ``dest``. Nothing is written if anything fails."""
    dest = Path(dest)
    data = encode_translation(doc, translations, bilingual=bilingual, encoding=encoding, newline=newline,
                              dest_name=dest.name)
    atomic_write_bytes(dest, data)
    return dest
