"""Moving processed inputs to done/ and failed/, and the ``NAME.EXT.error.txt`` reports.

Nothing here ever overwrites: a name that is taken gets `` (1)``, `` (2)``... before its
extension (``a.txt`` -> ``a (1).txt``), like browsers do for downloads, so a script dropped twice
keeps both copies. Subfolders are mirrored (``inbox/a/b.txt`` -> ``done/a/b.txt``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import time
from pathlib import Path

from asmr_daemon.errors import InputError
from asmr_daemon.scripts.writer import atomic_write_bytes


def numbered(path: Path, n: int) -> Path:
    """``dir/name (n).ext`` (n = 0 gives ``path`` itself)."""
    return path.with_name(numbered_name(path.name, n))


def numbered_name(name: str, n: int) -> str:
    """``name (n).ext`` (n = 0 gives ``name`` itself)."""
    if n == 0:
        return name
    path = Path(name)
    return f"{path.stem} ({n}){path.suffix}"


REPORT_SUFFIX = ".error.txt"
NAME_MAX = 255


def report_name(name: str) -> str:
    """``NAME.error.txt``; for a name so long that this would pass 255 bytes, the name is cut
    (on a character boundary) and a short hash of the whole name keeps reports apart."""
    full = name + REPORT_SUFFIX
    if len(os.fsencode(full)) <= NAME_MAX:
        return full
    tag = "~" + hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
    room = NAME_MAX - len(REPORT_SUFFIX) - len(tag)
    cut = os.fsencode(name)[:room].decode("utf-8", "ignore")
    while len(os.fsencode(cut)) > room:
        cut = cut[:-1]
    return cut + tag + REPORT_SUFFIX


def unique_destination(path: Path, *, also_free: tuple[str, ...] = ()) -> Path:
    """The first of ``path``, ``path (1)``, ``path (2)``... that does not exist (as a file or a
    dangling link), nor does ``candidate + suffix`` for each suffix in ``also_free``."""
    n = 0
    while True:
        candidate = numbered(path, n)
        taken = os.path.lexists(candidate) or any(os.path.lexists(f"{candidate}{s}") for s in also_free)
        if not taken:
            return candidate
        n += 1


def move_no_clobber(src: Path, dest: Path) -> None:
    """Move ``src`` (a file or a symlink, never followed) to ``dest`` without overwriting.

    ``os.link`` fails when ``dest`` exists, so it is an atomic "rename unless taken" on one
    filesystem; ``os.rename`` alone would silently replace a file of the same name. Crossing
    filesystems (done/ configured on another disk) falls back to a copy, after a last check.
    Raises FileExistsError when ``dest`` is taken.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest, follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise FileExistsError(errno.EEXIST, "destination exists", str(dest)) from None
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
        if os.path.lexists(dest):
            raise FileExistsError(errno.EEXIST, "destination exists", str(dest)) from None
        shutil.move(src, dest)
        return
    os.unlink(src)


def atomic_write_text(dest: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``dest`` atomically: a reader (or a crash) never sees half a file."""
    atomic_write_bytes(dest, text.encode("utf-8"))


def error_report(source_name: str, code: str, message: str, hint: str | None, when: float | None = None) -> str:
    """The text of ``NAME.EXT.error.txt``: what is wrong, what to do, the code and the time."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(time.time() if when is None else when))
    lines = [
        f"{source_name} could not be translated.",
        "",
        f"What is wrong: {message}",
        f"What to do:    {hint or 'fix the file and drop it into the inbox again'}",
        f"Error code:    {code}",
        f"Time:          {stamp}",
        "",
    ]
    return "\n".join(lines)


def error_report_path(moved: Path) -> Path:
    return moved.with_name(report_name(moved.name))


def write_failure(moved: Path, code: str, error: InputError | str, hint: str | None = None) -> Path:
    """Write the report next to the moved input ``moved``; returns its path."""
    message = error.message if isinstance(error, InputError) else str(error)
    if isinstance(error, InputError) and hint is None:
        hint = error.hint
    report = error_report_path(moved)
    atomic_write_text(report, error_report(moved.name, code, message, hint))
    return report
