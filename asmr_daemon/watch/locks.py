"""Exclusive ``flock`` files: one daemon per state dir (``service.StateLock``) and one per inbox
(``INBOX/.asmr-daemon.lock``, ``InboxLock``).

The state-dir lock stops two daemons sharing a state dir; two daemons started with different
state dirs on one inbox (a second user, a test instance) would still both translate every file,
hence the inbox lock. Its file is hidden, so the inbox filter ignores it. The kernel drops a lock
when the process dies, even by kill -9.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from asmr_daemon.errors import ConfigError

INBOX_LOCK_FILE = ".asmr-daemon.lock"


class FileLock:
    """Take ``path`` (created with ``mode``) or raise ``busy(what the holder wrote)``; the holder
    writes ``text`` into it when the file is its own."""

    def __init__(self, path: Path, text: str, busy: Callable[[str], ConfigError], *, mode: int = 0o600) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        except PermissionError:  # a folder we may not write: a lock file someone created still works
            self._fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            other = os.pread(self._fd, 4096, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise busy(other) from None
            raise
        if os.fstat(self._fd).st_uid == os.geteuid():
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text.encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class InboxLock(FileLock):
    def __init__(self, inbox: Path, state_dir: Path) -> None:
        super().__init__(inbox / INBOX_LOCK_FILE, f"pid {os.getpid()}, state dir {state_dir}\n",
                         lambda other: ConfigError(
                             f"another asmr-daemon already watches the inbox {inbox} ({other})",
                             "run one daemon per inbox: stop the other one, or give this one another "
                             "[paths] inbox"), mode=0o644)
