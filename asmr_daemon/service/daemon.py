"""The watch-folder daemon: the watcher + durable queue + one job worker, the parts that run next
to it (the LSP endpoint) and the process around them (sd_notify, signals, status record).

Loading the model is the composition root's job (``service.root.Service``), done *before*
``Daemon.run``, so ``READY=1`` is only sent once the model is resident: systemd's
``TimeoutStartSec`` covers the load and ``systemctl --user start`` returns when translations can
really be served.

Signals: SIGTERM/SIGINT -> ``STOPPING=1``, the file in flight is finished, exit 0 (queued jobs
stay queued for the next start). SIGHUP -> ``reload()`` (the root reads the settings again and
hands them to every part, this daemon's ``apply`` included); folders only change on restart.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from asmr_daemon import sdnotify
from asmr_daemon.config import Settings
from asmr_daemon.errors import AsmrError, ConfigError
from asmr_daemon.private import private_dir
from asmr_daemon.service.state import JOBS_FILE, STATUS_FILE, StateLock, StatusFile, process_rss_bytes
from asmr_daemon.watch.filters import InboxFilter
from asmr_daemon.watch.jobs import JobStore, display_name
from asmr_daemon.watch.locks import InboxLock
from asmr_daemon.watch.moves import lstat_signature
from asmr_daemon.watch.runner import Folders, JobRunner, TranslateFile
from asmr_daemon.watch.stability import StabilityTracker, Unstable
from asmr_daemon.watch.watcher import InboxWatcher
from asmr_daemon.watch.worker import JobWorker

log = logging.getLogger("asmr_daemon")

HEARTBEAT_SECONDS = 5.0


class Part(Protocol):
    """Something that runs next to the watch folder (the LSP endpoint): started after the
    watcher, stopped after the job in flight has finished."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


# -- the daemon --------------------------------------------------------------------------------

def _abs(path: Path) -> Path:
    return Path(os.path.abspath(path.expanduser()))


def check_folders(settings: Settings) -> Folders:
    """The folders, absolute; a layout that would loop (outbox = inbox...) stops start-up."""
    paths = settings.paths
    folders = Folders(inbox=_abs(paths.inbox), outbox=_abs(paths.outbox), done=_abs(paths.done),
                      failed=_abs(paths.failed))
    for name in ("outbox", "done", "failed"):
        folder = getattr(folders, name)
        if folder == folders.inbox:
            raise ConfigError(f"the {name} folder must not be the inbox itself ({folder})",
                              f"use a separate folder, e.g. {folders.inbox / name}")
        if folders.inbox.is_relative_to(folder):
            raise ConfigError(f"the inbox {folders.inbox} must not be inside the {name} folder {folder}")
    return folders


# How long the job worker waits before trying again while the generation server is unreachable
# (the backend itself already retried each request with backoff for a few seconds).
BACKEND_RETRY_SECONDS = 5.0


class Daemon:
    """The watch-folder daemon. ``run()`` blocks until SIGTERM/SIGINT (or ``stop()``)."""

    def __init__(self, settings: Settings, translate_file: TranslateFile, *,
                 model: Callable[[], Mapping[str, Any]] = dict,
                 reload: Callable[[], None] | None = None,
                 parts: Iterable[Part] = (),
                 status_extra: Callable[[], Mapping[str, Any]] | None = None,
                 lock: StateLock | None = None,
                 status: StatusFile | None = None,
                 notify: Callable[..., bool] = sdnotify.notify,
                 max_attempts: int = 3,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS,
                 retry_seconds: tuple[float, float] = (BACKEND_RETRY_SECONDS, 60.0)) -> None:
        """``model``: what status and ``STATUS=`` say about the model, asked each time (never a
        copy). ``reload``: what SIGHUP runs (the root re-reads settings and calls ``apply``)."""
        self.settings = settings
        self.translate_file = translate_file
        self.model = model
        self._reload = reload
        self.parts = list(parts)
        self.status_extra = status_extra
        self.notify = notify
        self.max_attempts = max_attempts
        self.heartbeat_seconds = heartbeat_seconds
        self.folders = check_folders(settings)
        state_dir = _abs(settings.paths.state_dir)
        self.state_dir = state_dir
        self.status = status or StatusFile(state_dir / STATUS_FILE)
        self._lock = lock
        self._inbox_lock: InboxLock | None = None
        self._stop = threading.Event()
        self._signal_stop = False    # set by signal handlers: only plain assignments there
        self._signal_reload = False
        self._wake = threading.Event()
        self.retry_seconds = retry_seconds
        self.exit_code = 0
        self._started: list[Part] = []
        self.store: JobStore | None = None
        self.watcher: InboxWatcher | None = None
        self.worker: JobWorker | None = None

    # -- start / stop ------------------------------------------------------------------------

    def start(self) -> None:
        """Take the state dir and the inbox, recover the queue, start the worker, the watcher and
        the services. A state dir that cannot be used is one clear ConfigError, not a traceback."""
        try:
            self.store = self._open_state()
        except BaseException as exc:
            self._release_locks()  # a daemon that did not start holds nothing
            if not isinstance(exc, (OSError, sqlite3.Error)):
                raise
            raise ConfigError(f"cannot use the state dir {self.state_dir}: {exc}",
                              "make it writable by this user (and check the disk), or pass another "
                              "--state-dir") from exc
        requeued, crashed = self.store.recover(self.max_attempts)
        if requeued or crashed:
            log.warning("resuming after an unclean stop: %d job(s) requeued, %d given up", requeued, crashed)
        self.runner = JobRunner(self.store, self.folders, self.translate_file, max_attempts=self.max_attempts,
                                share_group=self.settings.output.group_from_inbox)
        watch = self.settings.watch
        tracker = StabilityTracker(watch.stable_seconds, watch.max_wait_seconds)
        filter = InboxFilter.for_folders(self.folders.inbox, self.folders.outbox, self.folders.done,
                                         self.folders.failed)
        self.watcher = InboxWatcher(filter, tracker, on_ready=self._on_ready, on_unstable=self._on_unstable,
                                    observer=watch.observer, rescan_seconds=watch.rescan_seconds)
        self.watcher.mark_in_flight(self.folders.inbox / s for s in self.store.active_sources())
        self.worker = JobWorker(self.store, self.runner, self.watcher, stop=self._stop, wake=self._wake,
                                on_status=self._write_status, retry_seconds=self.retry_seconds)
        self.worker.start()
        self.watcher.start()
        for part in self.parts:
            part.start()
            self._started.append(part)
        self._write_status(phase="ready")

    def _open_state(self) -> JobStore:
        if self._lock is None:
            self._lock = StateLock(self.state_dir)
        self.folders.inbox.mkdir(parents=True, exist_ok=True)
        if self._inbox_lock is None:
            self._inbox_lock = InboxLock(self.folders.inbox, self.state_dir)
        private_dir(self.folders.outbox, tighten=False)
        store = JobStore(self.state_dir / JOBS_FILE)
        if store.set_aside is not None:
            log.error("the job queue was damaged and set aside as %s; the inbox is scanned again, and "
                      "outputs already written are recognised by the record beside them", store.set_aside)
        return store

    def stop(self) -> None:
        """Ask the daemon to stop (thread-safe); ``run()`` returns after the job in flight."""
        self._stop.set()
        self._wake.set()

    def shutdown(self) -> None:
        """Stop everything in order: no new files, finish the job in flight, services, queue."""
        self._stop.set()
        self._wake.set()
        if self.watcher is not None:
            self.watcher.stop()
        if self.worker is not None:
            self.worker.join()
        for part in reversed(self._started):
            try:
                part.stop()
            except Exception:  # noqa: BLE001
                log.exception("stopping %r failed", part)
        self._started.clear()
        if self.store is not None:
            self._write_status(phase="stopped", current=None)
            self.store.close()
            self.store = None
        self._release_locks()

    def _release_locks(self) -> None:
        if self._inbox_lock is not None:
            self._inbox_lock.release()
            self._inbox_lock = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def run(self) -> int:
        """Start, tell systemd we are ready, serve until a stop signal; returns the exit code."""
        self._install_signals()
        try:
            self.start()
            self.notify("READY=1", f"STATUS={self._status_line()}")
            log.info("ready: watching %s -> %s", self.folders.inbox, self.folders.outbox)
            self._main_loop()
            log.info("stopping: finishing the file in flight")
            self.notify("STOPPING=1", "STATUS=stopping: finishing the file in flight")
            self._write_status(phase="stopping")
        finally:
            self.shutdown()
        log.info("stopped")
        return self.exit_code

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal.signal only works there; embedders call stop() instead

        def on_stop(signum: int, frame: FrameType | None) -> None:
            self._signal_stop = True

        def on_hup(signum: int, frame: FrameType | None) -> None:
            self._signal_reload = True

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def _main_loop(self) -> None:
        ping_every = sdnotify.watchdog_interval()
        next_ping = 0.0
        next_beat = time.monotonic() + self.heartbeat_seconds
        while not (self._stop.is_set() or self._signal_stop):
            # Short waits: signal handlers only set flags (Event.set is not safe in a handler).
            self._stop.wait(0.2)
            now = time.monotonic()
            if self._signal_reload:
                self._signal_reload = False
                self.reload()
            if self.worker is not None and self.worker.fatal is not None:
                log.critical("exiting with status 1 so that systemd restarts the daemon")
                self.exit_code = 1
                break
            if ping_every and now >= next_ping and self.healthy():
                self.notify("WATCHDOG=1")
                next_ping = now + ping_every
            if now >= next_beat:
                next_beat = now + self.heartbeat_seconds
                self._write_status()

    def healthy(self) -> bool:
        """Worker and watcher threads alive: otherwise stop pinging so systemd restarts us."""
        return bool(self.worker and self.worker.alive() and self.watcher and self.watcher.alive)

    def reload(self) -> None:
        """SIGHUP: the root reads the settings again and hands them to every part (``apply`` here)."""
        if self._reload is None:
            log.info("reload requested, but no settings source to reload from")
            return
        self.notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}",
                    "STATUS=reloading settings")
        try:
            self._reload()
        except AsmrError as exc:
            log.error("reload failed, keeping the old settings: %s", exc)
        else:
            log.info("settings reloaded")
        self.notify("READY=1", f"STATUS={self._status_line()}")

    def apply(self, new: Settings) -> None:
        """New settings: watch timings apply now, folders on restart."""
        if check_folders(new) != self.folders or _abs(new.paths.state_dir) != self.state_dir:
            log.warning("folder changes take effect after a restart (systemctl --user restart asmr-daemon)")
        self.settings = new
        if self.watcher is not None:
            self.watcher.tracker.stable_seconds = new.watch.stable_seconds
            self.watcher.tracker.max_wait_seconds = new.watch.max_wait_seconds
            self.watcher.rescan_seconds = new.watch.rescan_seconds

    def announce(self) -> None:
        """The model changed (adapter switch): the status record and systemd's STATUS say so now."""
        self._write_status()
        self.notify(f"STATUS={self._status_line()}")

    # -- the watch folder --------------------------------------------------------------------

    def _on_ready(self, path: Path) -> None:
        assert self.store is not None
        rel = path.relative_to(self.folders.inbox).as_posix()
        job_id = self.store.enqueue(rel, signature=lstat_signature(path))
        if job_id is None:  # left in the inbox by an earlier job that could not move it: reported once
            if self.watcher is not None:
                self.watcher.release(path)
            return
        log.debug("queued job %d: %s", job_id, display_name(rel))
        self._wake.set()

    def _on_unstable(self, item: Unstable) -> None:
        assert self.worker is not None
        self.worker.unstable.append(item)
        self._wake.set()

    # -- introspection ---------------------------------------------------------------------------

    def idle(self) -> bool:
        """Nothing queued, running, settling or in flight (for tests and ``status``)."""
        if self.store is None or self.watcher is None:
            return False
        counts = self.store.counts()
        with self.watcher._lock:
            settling = len(self.watcher.tracker)
        return (counts["queued"] == 0 and counts["running"] == 0 and not settling
                and not self.watcher.in_flight() and not (self.worker and self.worker.unstable))

    def _status_line(self) -> str:
        info = self.model()
        model = info.get("base_model") or "model"
        adapter = info.get("adapter")
        return f"ready: {model}" + (f" + {adapter}" if adapter else "") + f", watching {self.folders.inbox}"

    def _write_status(self, **fields: Any) -> None:
        base: dict[str, Any] = {}
        if "inbox" not in self.status.data:
            base = {"pid": os.getpid(), "started": self.status.data.get("started", time.time()),
                    "inbox": str(self.folders.inbox), "outbox": str(self.folders.outbox),
                    "done": str(self.folders.done), "failed": str(self.folders.failed)}
        base["model"] = {**self.status.data.get("model", {}), **self.model()}
        base["rss_bytes"] = process_rss_bytes()
        if self.worker is not None:
            base["worker"] = self.worker.status()
        if self.watcher is not None:
            base["unqueued"] = self.watcher.unqueued_status()
        if self.status_extra is not None:
            try:
                base.update(self.status_extra())
            except Exception:  # noqa: BLE001 - a status probe must not stop the daemon
                log.debug("status probe failed", exc_info=True)
        try:
            self.status.update(**base, **fields)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.status.path, exc)
