"""The daemon: composes the watch folder (watcher + durable queue + one job worker), optional
extra services (the LSP endpoint) and systemd integration (sd_notify, signals, status record).

Loading the model is the caller's job (``commands/serve.py``), done *before* ``Daemon.run``, so
``READY=1`` is only sent once the model is resident: systemd's ``TimeoutStartSec`` covers the load
and ``systemctl --user start`` returns when translations can really be served.

Signals: SIGTERM/SIGINT -> ``STOPPING=1``, the file in flight is finished, exit 0 (queued jobs
stay queued for the next start). SIGHUP -> settings are read again and handed to ``on_reload``
(the engine switches adapters there); folders only change on restart.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from asmr_daemon import sdnotify
from asmr_daemon.config import Settings
from asmr_daemon.errors import AsmrError, ConfigError
from asmr_daemon.private import private_dir
from asmr_daemon.watch.filters import InboxFilter
from asmr_daemon.watch.jobs import JobStore, display_name
from asmr_daemon.watch.locks import FileLock, InboxLock
from asmr_daemon.watch.moves import lstat_signature
from asmr_daemon.watch.outputs import atomic_write_text
from asmr_daemon.watch.runner import Folders, JobRunner, TranslateFile
from asmr_daemon.watch.stability import StabilityTracker, Unstable
from asmr_daemon.watch.watcher import InboxWatcher
from asmr_daemon.watch.worker import JobWorker

log = logging.getLogger("asmr_daemon")

STATUS_FILE = "status.json"
JOBS_FILE = "jobs.sqlite"
LOCK_FILE = "daemon.lock"
HEARTBEAT_SECONDS = 5.0


class Service(Protocol):
    """Something that runs next to the watch folder (the LSP endpoint): started after the
    watcher, stopped after the job in flight has finished."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


# -- logging -----------------------------------------------------------------------------------

class _JournalFormatter(logging.Formatter):
    """Prefixes ``<N>`` (syslog priority) so journald files each line at its level."""

    LEVELS = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        priority = self.LEVELS.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def is_journal(stream: Any) -> bool:
    """True when ``stream`` is the journal: systemd sets ``$JOURNAL_STREAM`` to the device and
    inode of the stream it connected, so an inherited variable alone (a child whose stderr is a
    pipe or a file) does not count."""
    try:
        device, inode = (int(part) for part in os.environ.get("JOURNAL_STREAM", "").split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


def setup_logging(verbose: bool = False, stream=None) -> None:
    """Plain ``logging`` to stderr: a rich handler on a terminal (with the time); on a pipe or in a
    file plain lines with a timestamp; in the journal plain lines without one (journald adds its
    own) but with syslog priorities."""
    stream = stream or sys.stderr
    level = logging.DEBUG if verbose or os.environ.get("ASMR_DEBUG") else logging.INFO
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_asmr", False):
            root.removeHandler(old)
    handler: logging.Handler
    if stream.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(file=stream), show_path=False, rich_tracebacks=True)
    else:
        handler = logging.StreamHandler(stream)
        fmt = "%(levelname)s %(name)s: %(message)s"
        handler.setFormatter(_JournalFormatter(fmt) if is_journal(stream)
                             else logging.Formatter("%(asctime)s " + fmt, "%Y-%m-%d %H:%M:%S"))
    setattr(handler, "_asmr", True)  # marks our handler, so a second call replaces it
    root.addHandler(handler)
    root.setLevel(level)
    # watchdog logs every event at DEBUG; keep the journal readable.
    logging.getLogger("watchdog").setLevel(logging.WARNING)


# -- state dir: lock and status record -------------------------------------------------------

class StateLock(FileLock):
    """``state_dir/daemon.lock``: one daemon per state dir (two would race for the same jobs)."""

    def __init__(self, state_dir: Path) -> None:
        private_dir(state_dir)
        super().__init__(state_dir / LOCK_FILE, f"{os.getpid()}\n", lambda other: ConfigError(
            f"another asmr-daemon (pid {other}) already uses the state dir {state_dir}",
            "stop it first (systemctl --user stop asmr-daemon), or pass another --state-dir"))


class StatusFile:
    """``state_dir/status.json``: what ``asmr-daemon status`` shows about the running daemon
    (pid, phase, model, heartbeat). Rewritten atomically, so readers never see half of it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        self._lock = threading.Lock()

    def update(self, **fields: Any) -> None:
        with self._lock:
            self.data.update(fields)
            self.data["heartbeat"] = time.time()
            atomic_write_text(self.path, json.dumps(self.data, ensure_ascii=False, indent=2, default=str) + "\n")

    @staticmethod
    def read(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None


def process_rss_bytes() -> int | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


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
                 model_info: Mapping[str, Any] | None = None,
                 reload_settings: Callable[[], Settings] | None = None,
                 on_reload: Callable[[Settings], None] | None = None,
                 extra_services: Iterable[Service] = (),
                 status_extra: Callable[[], Mapping[str, Any]] | None = None,
                 lock: StateLock | None = None,
                 status: StatusFile | None = None,
                 notify: Callable[..., bool] = sdnotify.notify,
                 max_attempts: int = 3,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS,
                 retry_seconds: tuple[float, float] = (BACKEND_RETRY_SECONDS, 60.0)) -> None:
        self.settings = settings
        self.translate_file = translate_file
        self.model_info = dict(model_info or {})
        self.reload_settings = reload_settings
        self.on_reload = on_reload
        self.extra_services = list(extra_services)
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
        self._started_services: list[Service] = []
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
        for service in self.extra_services:
            service.start()
            self._started_services.append(service)
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
        for service in reversed(self._started_services):
            try:
                service.stop()
            except Exception:  # noqa: BLE001
                log.exception("stopping %r failed", service)
        self._started_services.clear()
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

        def on_stop(signum, frame) -> None:
            self._signal_stop = True

        def on_hup(signum, frame) -> None:
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
        """SIGHUP: read the settings again; timings and outputs apply now, folders on restart."""
        if self.reload_settings is None:
            log.info("reload requested, but no settings source to reload from")
            return
        self.notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}",
                    "STATUS=reloading settings")
        try:
            new = self.reload_settings()
            if check_folders(new) != self.folders or _abs(new.paths.state_dir) != self.state_dir:
                log.warning("folder changes take effect after a restart (systemctl --user restart asmr-daemon)")
            if self.on_reload is not None:
                self.on_reload(new)
        except AsmrError as exc:
            log.error("reload failed, keeping the old settings: %s", exc)
        else:
            self.settings = new
            if self.watcher is not None:
                self.watcher.tracker.stable_seconds = new.watch.stable_seconds
                self.watcher.tracker.max_wait_seconds = new.watch.max_wait_seconds
                self.watcher.rescan_seconds = new.watch.rescan_seconds
            log.info("settings reloaded")
        self.notify("READY=1", f"STATUS={self._status_line()}")

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

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.idle():
                return True
            time.sleep(0.05)
        return self.idle()

    def _status_line(self) -> str:
        model = self.model_info.get("base_model") or "model"
        adapter = self.model_info.get("adapter")
        return f"ready: {model}" + (f" + {adapter}" if adapter else "") + f", watching {self.folders.inbox}"

    def _write_status(self, **fields: Any) -> None:
        base: dict[str, Any] = {}
        if "inbox" not in self.status.data:
            base = {"pid": os.getpid(), "started": self.status.data.get("started", time.time()),
                    "inbox": str(self.folders.inbox), "outbox": str(self.folders.outbox),
                    "done": str(self.folders.done), "failed": str(self.folders.failed),
                    "model": {**self.status.data.get("model", {}), **self.model_info}}
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
