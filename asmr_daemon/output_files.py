"""Publishing outputs without ever destroying a user's file.

An existing output is replaced only when it is byte-identical to what asmr-daemon wrote there
last; a file the user corrected (or any file we did not write) stays, and the new output goes
beside it as ``NAME.zh (1).EXT`` (then ``(2)``...), with a reason for the log and the report.

What we wrote is recorded beside each output in a hidden JSON file, ``.NAME.zh.EXT.asmr.json``:
``{"sha256": <output>, "source_sha256": <input>, "written": <time>}``. It lives next to the output
(not in the state dir) so that every writer -- the daemon, ``translate`` in-process with another
state dir, a daemon whose job queue was lost -- recognises its own outputs. ``written_by_us`` and
``read_record`` are the API for that (the watch folder uses them to skip work after losing its
queue: an output that is ours, unchanged and made from an input with the same hash is done).

Crash safety: before an output is renamed into place the record also names the new hash as
``pending``; a crash between the rename and the final record leaves a file that still matches the
record, so it is never mistaken for a user's edit.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asmr_daemon.scripts.writer import atomic_write_bytes

REVIEW_SUFFIX = ".review.txt"
RECORD_SUFFIX = ".asmr.json"
NAME_MAX = 255
_MAX_BESIDE = 1000


@dataclass(frozen=True, slots=True)
class Published:
    """Where an output went: ``path`` (absolute); ``reason`` says why it is not ``wanted``."""

    path: Path
    wanted: Path
    reason: str | None = None

    @property
    def review_path(self) -> Path:
        return review_path(self.path)


def fit_name(name: str, prefix: str = "", suffix: str = "") -> str:
    """``prefix + name + suffix``, with ``name`` cut (on a character boundary, plus a short hash of
    the whole name so that names stay apart) when that would pass NAME_MAX (255 bytes)."""
    full = prefix + name + suffix
    if len(os.fsencode(full)) <= NAME_MAX:
        return full
    tag = "~" + hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
    room = NAME_MAX - len(os.fsencode(prefix + suffix + tag))
    cut = os.fsencode(name)[:room].decode("utf-8", "ignore")
    while len(os.fsencode(cut)) > room:
        cut = cut[:-1]
    return prefix + cut + tag + suffix


def record_path(output: Path) -> Path:
    """The hidden record of what we wrote at ``output``: ``.NAME.zh.EXT.asmr.json``."""
    return output.with_name(fit_name(output.name, ".", RECORD_SUFFIX))


def review_path(output: Path) -> Path:
    """``NAME.zh.EXT`` -> ``NAME.zh.EXT.review.txt``."""
    return output.with_name(fit_name(output.name, "", REVIEW_SUFFIX))


def beside(path: Path, n: int) -> Path:
    """``NAME.zh.EXT`` -> ``NAME.zh (n).EXT`` (n = 0: ``path`` itself)."""
    if n == 0:
        return path
    return path.with_name(fit_name(path.stem, "", f" ({n}){path.suffix}"))


def sha256_of(path: Path) -> str | None:
    """The file's SHA-256, None when it cannot be read (missing, a directory...)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def read_record(output: Path) -> dict[str, Any] | None:
    """The record beside ``output`` (``sha256``, ``source_sha256``, ``written``), None if absent or
    unreadable (an unreadable record only makes us more careful: the file counts as the user's)."""
    try:
        data = json.loads(record_path(output).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def written_by_us(output: Path, digest: str | None = None) -> bool:
    """True when ``output`` is a regular file whose bytes are exactly what we wrote there last."""
    if os.path.islink(output) or not os.path.isfile(output):
        return False
    record = read_record(output)
    if record is None:
        return False
    digest = digest or sha256_of(output)
    return digest is not None and digest in (record.get("sha256"), record.get("pending"))


def _why_taken(path: Path) -> str:
    if os.path.islink(path) or not os.path.isfile(path):
        return f"{path} exists and is not a regular file"
    if read_record(path) is None:
        return f"{path} was not written by asmr-daemon (or its record was removed); it is kept"
    return f"{path} was changed since asmr-daemon wrote it; your version is kept"


def choose(dest: Path, digest: str) -> Published:
    """The first of ``dest``, ``NAME.zh (1).EXT``... that is free, ours and unchanged, or already
    holds exactly these bytes."""
    dest = Path(os.path.abspath(dest))
    reason = None  # why ``dest`` itself could not be used
    for n in range(_MAX_BESIDE):
        candidate = beside(dest, n)
        if not os.path.lexists(candidate):
            return Published(candidate, dest, reason)
        existing = sha256_of(candidate) if os.path.isfile(candidate) and not os.path.islink(candidate) else None
        if existing is not None and (existing == digest or written_by_us(candidate, existing)):
            return Published(candidate, dest, reason)
        if reason is None:
            reason = _why_taken(candidate)
    raise FileExistsError(errno.EEXIST, f"no free name beside {dest}", str(dest))


def _write_record(output: Path, **fields: Any) -> None:
    fields = {k: v for k, v in fields.items() if v is not None}
    atomic_write_bytes(record_path(output), (json.dumps(fields, indent=1) + "\n").encode("utf-8"))


def _install(staged: Path, target: Path, replacing: bool) -> bool:
    """Move ``staged`` to ``target``; False if someone took a free name since we chose it."""
    if not replacing:
        try:  # link fails when the name is taken: never overwrite
            os.link(staged, target)
        except FileExistsError:
            return False
        os.unlink(staged)
    else:
        os.replace(staged, target)
    return True


def publish_staged(staged: Path, dest: Path, *, source_sha256: str | None = None) -> Published:
    """Move the finished file ``staged`` (in ``dest``'s folder) to the output ``dest``, or beside
    it when ``dest`` is a user's file. A review report beside ``staged`` moves along; a stale one
    beside the output is removed."""
    digest = sha256_of(staged)
    if digest is None:
        raise FileNotFoundError(errno.ENOENT, "staged output is missing", str(staged))
    for _ in range(_MAX_BESIDE):
        target = choose(dest, digest)
        previous = sha256_of(target.path) if os.path.lexists(target.path) else None
        _write_record(target.path, sha256=previous, pending=digest, source_sha256=source_sha256)
        if _install(staged, target.path, previous is not None):
            _write_record(target.path, sha256=digest, source_sha256=source_sha256,
                          written=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            _carry_review(review_path(staged), target.path)
            return target
    raise FileExistsError(errno.EEXIST, f"no free name beside {dest}", str(dest))


def _carry_review(staged_review: Path, output: Path) -> None:
    if os.path.isfile(staged_review):
        os.replace(staged_review, review_path(output))
    else:
        publish_review(output, None)


def publish(data: bytes, dest: Path, *, source_sha256: str | None = None) -> Published:
    """Write ``data`` as the output ``dest``, or beside it when ``dest`` is a user's file."""
    dest = Path(os.path.abspath(dest))
    tmp = dest.with_name(fit_name(dest.name, ".", f".new-{secrets.token_hex(4)}"))
    atomic_write_bytes(tmp, data)
    try:
        return publish_staged(tmp, dest, source_sha256=source_sha256)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def publish_review(output: Path, report: str | None) -> Path | None:
    """Write (or, with no flagged line, remove) ``NAME.zh.EXT.review.txt`` beside ``output``.

    A review report describes the output next to it, so an old one beside a replaced output is
    stale: it goes. Returns the report's path when one was written."""
    path = review_path(output)
    if report is None:
        with contextlib.suppress(FileNotFoundError):
            if os.path.isfile(path) and not os.path.islink(path):
                os.unlink(path)
        return None
    atomic_write_bytes(path, report.encode("utf-8"))
    return path
