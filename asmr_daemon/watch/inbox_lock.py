"""One daemon per inbox: ``INBOX/.asmr-daemon.lock``, an exclusive ``flock``.

The state-dir lock stops two daemons sharing a state dir; two daemons started with different
state dirs on one inbox (a second user, a test instance) would still both translate every file.
The lock file is hidden, so the inbox filter ignores it; the kernel drops the lock when the
process dies, even by kill -9.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from asmr_daemon.errors import ConfigError

INBOX_LOCK_FILE = ".asmr-daemon.lock"


class InboxLock:
    def __init__(self, inbox: Path, state_dir: Path) -> None:
        self.path = inbox / INBOX_LOCK_FILE
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except PermissionError:  # a read-only inbox: a lock file someone else created still works
            self._fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            other = os.pread(self._fd, 4096, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise ConfigError(f"another asmr-daemon already watches the inbox {inbox} ({other})",
                                  "run one daemon per inbox: stop the other one, or give this one "
                                  "another [paths] inbox") from None
            raise
        if os.fstat(self._fd).st_uid == os.geteuid():
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"pid {os.getpid()}, state dir {state_dir}\n".encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
