"""The thin watcher loop: one long-lived observer feeds the stability tracker; settled files are
handed to ``on_ready`` once (the in-flight set) until the daemon ``release``s them.

inotify shows a file written in place as created...closed, a rename into the folder as moved,
and a ``mv`` from another filesystem only as created; polling observers see no closes. So every
created/moved/closed event only means "look at it" and the tracker decides when it is complete.
Events can still be lost (inotify queue overflow, files dropped while the daemon was down), so
the inbox is also scanned at start-up and every ``rescan_seconds``.

The observer lives as long as the watcher: paperless-ngx once rebuilt its observer per batch and
lost files created in between.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.api import BaseObserver

from asmr_daemon.errors import ConfigError
from asmr_daemon.watch.filters import InboxFilter
from asmr_daemon.watch.stability import StabilityTracker, Unstable

log = logging.getLogger(__name__)


class _Handler(FileSystemEventHandler):
    """watchdog event handler: forwards paths to the watcher (runs on the observer's thread)."""

    def __init__(self, watcher: InboxWatcher) -> None:
        self.watcher = watcher

    def dispatch(self, event: FileSystemEvent) -> None:  # watchdog calls dispatch() on its handler
        kind = event.event_type
        if kind not in ("created", "moved", "closed"):
            return
        path = event.dest_path if kind == "moved" else event.src_path
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if event.is_directory:
            # A folder moved in may arrive as one event for the folder only: look inside.
            self.watcher.scan(Path(path))
        else:
            self.watcher.notice(Path(path))


def make_observer(kind: str, inbox: Path, handler: _Handler, polling_timeout: float = 1.0) -> BaseObserver:
    """Start a watchdog observer on ``inbox`` (recursive). ``kind``: inotify, polling or auto
    (inotify, falling back to polling when it cannot start, e.g. the per-user watch limit
    ``fs.inotify.max_user_watches`` is exhausted or the inbox is on a network filesystem)."""
    from watchdog.observers.polling import PollingObserver

    if kind in ("auto", "inotify"):
        try:
            from watchdog.observers.inotify import InotifyObserver

            observer: BaseObserver = InotifyObserver()
            observer.schedule(handler, str(inbox), recursive=True)
            observer.start()
            return observer
        except (OSError, ImportError) as exc:
            if kind == "inotify":
                raise ConfigError(f"cannot watch {inbox} with inotify: {exc}",
                                  "raise fs.inotify.max_user_watches, or set [watch] observer = \"polling\"") from exc
            log.warning("inotify is not available for %s (%s); polling every %.1fs instead", inbox, exc,
                        polling_timeout)
    observer = PollingObserver(timeout=polling_timeout)
    observer.schedule(handler, str(inbox), recursive=True)
    observer.start()
    return observer


class InboxWatcher:
    """Watches ``filter.inbox``; calls ``on_ready(path)`` once per settled file and
    ``on_unstable(Unstable)`` for files that never settled. Both run on the watcher's thread."""

    def __init__(self, filter: InboxFilter, tracker: StabilityTracker, *,
                 on_ready: Callable[[Path], None], on_unstable: Callable[[Unstable], None],
                 observer: str = "auto", rescan_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.filter = filter
        self.inbox = filter.inbox
        self.tracker = tracker
        self.on_ready = on_ready
        self.on_unstable = on_unstable
        self.observer_kind = observer
        self.rescan_seconds = rescan_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._in_flight: set[Path] = set()
        # Settled files whose hand-over failed (the queue could not be written: a full state
        # disk): tracked again and retried; ``status`` shows how many wait and why.
        self._unqueued: dict[Path, str] = {}
        self._next_rescan = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: BaseObserver | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the observer first, then scan, so nothing created in between is missed."""
        self.inbox.mkdir(parents=True, exist_ok=True)
        self._observer = make_observer(self.observer_kind, self.inbox, _Handler(self),
                                       polling_timeout=min(1.0, max(0.1, self.tracker.stable_seconds / 2)))
        self.scan(self.inbox)
        self._next_rescan = self.clock() + self.rescan_seconds
        self._thread = threading.Thread(target=self._loop, name="asmr-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive() and self._observer and self._observer.is_alive())

    def _loop(self) -> None:
        interval = min(0.25, max(0.02, self.tracker.stable_seconds / 4))
        while not self._stop.wait(interval):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - keep watching whatever one path did
                log.exception("watcher tick failed")

    # -- inputs ------------------------------------------------------------------------------

    def notice(self, path: Path) -> None:
        """An event (or scan) saw ``path``: track it unless ignored or already handed on."""
        path = Path(os.path.abspath(path))
        reason = self.filter.ignore_reason(path)
        if reason is not None:
            log.debug("ignoring %s: %s", path, reason)
            return
        with self._lock:
            if path not in self._in_flight:
                self.tracker.note(path, self.clock())

    def scan(self, folder: Path) -> None:
        """Notice every file under ``folder`` that is not tracked yet (start-up, rescans, folders
        moved in). Ignored folders (done/, failed/, hidden ones) are not entered."""
        for found in self._walk(folder):
            with self._lock:
                if found in self._in_flight or found in self.tracker:
                    continue
            self.notice(found)

    def _walk(self, folder: Path) -> Iterable[Path]:
        for root, dirs, files in os.walk(folder, followlinks=False):
            base = Path(root)
            dirs[:] = [d for d in dirs if not d.startswith(".")
                       and not any(base / d == ex for ex in self.filter.excluded)]
            for name in files:
                yield base / name
            # os.walk lists symlinks to folders under dirs; they are never followed.

    def mark_in_flight(self, paths: Iterable[Path]) -> None:
        """Paths the daemon already has jobs for (restart with a non-empty queue)."""
        with self._lock:
            for path in paths:
                path = Path(os.path.abspath(path))
                self._in_flight.add(path)
                self.tracker.forget(path)

    def release(self, path: Path) -> None:
        """The job for ``path`` ended: a new file under the same name is a new job."""
        with self._lock:
            self._in_flight.discard(Path(os.path.abspath(path)))

    def in_flight(self) -> set[Path]:
        with self._lock:
            return set(self._in_flight)

    # -- one step ----------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        """Rescan when due, then hand on what has settled. Called by the loop; tests call it."""
        now = self.clock() if now is None else now
        if self.rescan_seconds and now >= self._next_rescan:
            self._next_rescan = now + self.rescan_seconds
            self.scan(self.inbox)
        with self._lock:
            ready = [p for p in self.tracker.ready(now) if p not in self._in_flight]
            unstable = self.tracker.take_unstable()
            self._in_flight.update(ready)
            self._in_flight.update(u.path for u in unstable)
        for path in ready:
            self._hand_over(path, now)
        for item in unstable:
            self.on_unstable(item)

    def _hand_over(self, path: Path, now: float) -> None:
        """Each path on its own: a failure releases it and tracks it again (retried once it has
        settled again), so one bad name or a full disk never strands the rest of the pass."""
        try:
            self.on_ready(path)
        except Exception as exc:  # noqa: BLE001
            problem = f"{type(exc).__name__}: {exc}"
            with self._lock:
                first = self._unqueued.get(path) != problem
                self._unqueued[path] = problem
                self._in_flight.discard(path)
                self.tracker.note(path, now)
            if first:
                log.error("cannot queue %s (%s); trying again", os.fsencode(path).decode("utf-8", "replace"),
                          problem)
            return
        with self._lock:
            self._unqueued.pop(path, None)

    def unqueued_status(self) -> dict[str, object]:
        """How many settled files wait to be queued, and the latest reason."""
        with self._lock:
            problems = list(self._unqueued.values())
        return {"count": len(problems), "problem": problems[-1] if problems else None}
