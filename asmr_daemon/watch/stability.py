"""Pure stability tracker: a file is handed on only after its size and mtime stayed unchanged for
``stable_seconds``.

Why: inotify reports a file as soon as it is created, long before an editor, ``cp`` from another
filesystem or a browser download has finished writing it, and polling observers never see the
close. Reading too early translates half a script. The clock is a parameter (``now``) so tests
need no sleeping; only ``stat`` touches the filesystem, and it is injectable too.

A file that keeps changing is never handed on. After ``max_wait_seconds`` (counted from the first
time it was noticed) it is reported as unstable instead, so the daemon can move it to failed/
with ``InputCode.UNSTABLE`` rather than watching it forever. ``max_wait_seconds = 0`` disables
that (wait forever).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Signature = tuple[int, int]  # (size, mtime_ns)


@dataclass(slots=True)
class _Entry:
    first_seen: float
    changed_at: float
    signature: Signature | None


@dataclass(frozen=True, slots=True)
class Unstable:
    """A file that did not settle within the maximum wait."""

    path: Path
    waited: float


def stat_signature(path: Path) -> Signature | None:
    """(size, mtime) of ``path`` following symlinks (of the link itself when it dangles, so a
    dangling link settles and is reported instead of vanishing), or None when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        try:
            st = os.lstat(path)
        except OSError:
            return None
    return (st.st_size, st.st_mtime_ns)


class StabilityTracker:
    """Records noticed paths; ``ready(now)`` yields those that have settled.

    Not thread-safe: the watcher calls it under its own lock.
    """

    def __init__(self, stable_seconds: float, max_wait_seconds: float = 600.0, *,
                 stat: Callable[[Path], Signature | None] = stat_signature) -> None:
        self.stable_seconds = stable_seconds
        self.max_wait_seconds = max_wait_seconds
        self._stat = stat
        self._entries: dict[Path, _Entry] = {}
        self._unstable: list[Unstable] = []

    def __contains__(self, path: Path) -> bool:
        return path in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def note(self, path: Path, now: float) -> None:
        """Something happened to ``path`` (an event or a rescan found it).

        Noting a tracked path again restarts its quiet period (an event means it was touched, even
        if size and mtime happen to look the same) but not its maximum wait.
        """
        entry = self._entries.get(path)
        if entry is None:
            self._entries[path] = _Entry(first_seen=now, changed_at=now, signature=self._stat(path))
        else:
            entry.changed_at = now

    def forget(self, path: Path) -> None:
        self._entries.pop(path, None)

    def ready(self, now: float) -> list[Path]:
        """Paths whose size and mtime have not changed for ``stable_seconds``; they are forgotten.

        Paths that vanished are dropped silently; paths that kept changing past the maximum wait
        are dropped and queued for ``take_unstable()``.
        """
        settled: list[Path] = []
        for path, entry in list(self._entries.items()):
            signature = self._stat(path)
            if signature is None:
                del self._entries[path]
                continue
            if signature != entry.signature:
                entry.signature = signature
                entry.changed_at = now
            if now - entry.changed_at >= self.stable_seconds:
                del self._entries[path]
                settled.append(path)
            elif self.max_wait_seconds and now - entry.first_seen >= self.max_wait_seconds:
                del self._entries[path]
                self._unstable.append(Unstable(path, now - entry.first_seen))
        return sorted(settled)

    def take_unstable(self) -> list[Unstable]:
        """Files found unstable by earlier ``ready`` calls (each reported once)."""
        found, self._unstable = self._unstable, []
        return found
