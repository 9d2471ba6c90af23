"""What the translator reads: a private link to the very handle the job checked.

``translate_file(src, dest)`` takes a path (the ``translate`` CLI shares it). Handing it the inbox
path would let it open whatever that path names by then (a folder swapped for a symlink); so the
job links ``STATE_DIR/work/jobN/NAME`` to ``/proc/self/fd/FD`` of the checked handle, which names
that open file whatever happens to the inbox. A ``glossary.tsv`` beside the script is opened the
same way (without following a symlink) and linked beside it, so the per-work glossary still
applies. The folder is 0700 and removed after the job.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from asmr_daemon.engine.glossary import SCRIPT_GLOSSARY_NAME
from asmr_daemon.watch.handles import Source
from asmr_daemon.watch.jobs import Job


def hash_fd(fd: int) -> str:
    digest = hashlib.sha256()
    offset = 0
    while block := os.pread(fd, 1 << 20, offset):
        digest.update(block)
        offset += len(block)
    return digest.hexdigest()


def hash_or_none(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hash_fd(handle.fileno())
    except OSError:
        return None


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root

    @contextlib.contextmanager
    def link(self, job: Job, source: Source) -> Iterator[Path]:
        """``work/jobN/NAME`` -> the checked handle of ``source`` (regular files only)."""
        assert source.fd is not None
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder = self.root / f"job{job.id}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(mode=0o700)
        glossary = _open_glossary(source)
        try:
            src = folder / source.name
            src.symlink_to(f"/proc/self/fd/{source.fd}")
            if glossary is not None:
                (folder / SCRIPT_GLOSSARY_NAME).symlink_to(f"/proc/self/fd/{glossary}")
            yield src
        finally:
            if glossary is not None:
                os.close(glossary)
            shutil.rmtree(folder, ignore_errors=True)


def _open_glossary(source: Source) -> int | None:
    try:
        fd = os.open(SCRIPT_GLOSSARY_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=source.parent_fd)
    except OSError:
        return None  # none there, or a symlink (not followed)
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO would block the reader
        os.close(fd)
        return None
    return fd
