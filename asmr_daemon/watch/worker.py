"""The job worker thread: one job at a time, never dying silently.

The audit saw the worker die on a SQLite "disk full" while it put a job back, while the main
thread kept the heartbeat fresh and ``status`` said "ready, 4 queued, 1 running" forever. Now:

* an error outside a job (the queue cannot be written, a disk is full) is retried with backoff,
  and a job that could not be put back is put back first when the disk works again;
* the worker beats on its own (``beat``), so ``alive`` means "this thread is still taking jobs",
  not "the process exists";
* an unexpected error that keeps coming back (``MAX_UNEXPECTED`` in a row) ends the worker with
  ``fatal`` set: the daemon then exits non-zero and systemd restarts it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from asmr_daemon.errors import InputCode, InputError
from asmr_daemon.watch.jobs import JobCode, JobState, JobStore
from asmr_daemon.watch.runner import JobRunner, storage_problem
from asmr_daemon.watch.stability import Unstable
from asmr_daemon.watch.watcher import InboxWatcher

log = logging.getLogger(__name__)

MAX_UNEXPECTED = 5
# Longest a job may run before the worker counts as hung (a 5 MB script on a slow CPU is far less).
MAX_JOB_SECONDS = 3600.0
IDLE_BEAT_SECONDS = 30.0


class JobWorker:
    def __init__(self, store: JobStore, runner: JobRunner, watcher: InboxWatcher, *,
                 stop: threading.Event, wake: threading.Event,
                 on_status: Callable[..., None], retry_seconds: tuple[float, float] = (5.0, 60.0),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.runner = runner
        self.watcher = watcher
        self.inbox = watcher.inbox
        self.stop = stop
        self.wake = wake
        self.on_status = on_status
        self.retry_seconds = retry_seconds
        self.clock = clock
        self.unstable: collections.deque[Unstable] = collections.deque()
        self.beat = clock()
        self.current: str | None = None
        self.problem: str | None = None   # why jobs wait (disk full, server down), None when fine
        self.fatal: BaseException | None = None
        self._put_back: list[int] = []    # running jobs to requeue once the queue is writable again
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="asmr-jobs", daemon=True)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def alive(self) -> bool:
        """The thread runs, has not given up, and beat recently (or is inside one job)."""
        if self._thread is None or not self._thread.is_alive() or self.fatal is not None:
            return False
        limit = MAX_JOB_SECONDS if self.current is not None else IDLE_BEAT_SECONDS + self.retry_seconds[1]
        return self.clock() - self.beat < limit

    def status(self) -> dict[str, Any]:
        return {"alive": self.alive(), "problem": self.problem,
                "beat": time.time() - (self.clock() - self.beat)}

    def _backoff(self, failures: int) -> float:
        base, cap = self.retry_seconds
        return min(cap, base * 2 ** max(0, failures - 1))

    def _loop(self) -> None:
        failures = unexpected = 0
        while not self.stop.is_set():
            self.beat = self.clock()
            try:
                waited = self._step()
            except Exception as exc:  # noqa: BLE001 - retried below; fatal only when it persists
                failures += 1
                problem = storage_problem(exc)
                unexpected = 0 if problem is not None else unexpected + 1
                self.problem = problem or f"{type(exc).__name__}: {exc}"
                if unexpected >= MAX_UNEXPECTED:
                    self.fatal = exc
                    log.critical("the job worker cannot go on (%s); the daemon exits", self.problem, exc_info=exc)
                    self.wake.set()
                    return
                delay = self._backoff(failures)
                log.error("job worker: %s; trying again in %.0f s", self.problem, delay,
                          exc_info=exc if problem is None else None)
                self.stop.wait(delay)
                continue
            unexpected = 0
            if waited:
                failures += 1
                self.stop.wait(self._backoff(failures))
            else:
                failures = 0

    def _step(self) -> bool | None:
        """One unit of work; True when jobs wait for the machine (back off), None when idle."""
        while self._put_back:
            self.store.requeue(self._put_back[0], JobCode.STORAGE, self.problem or "put back", count_attempt=False)
            self._put_back.pop(0)
        if self.unstable:
            self._refuse_unstable(self.unstable[0])
            self.unstable.popleft()
            return False
        self.wake.clear()
        job = self.store.claim()
        if job is None:
            self.problem = None  # nothing waits any more
            self.wake.wait(1.0)
            return None
        self.current = job.source
        self.on_status(current=job.source)
        try:
            state = self.runner.process(job)
        except BaseException:
            self._put_back.append(job.id)
            raise
        finally:
            self.current = None
        if state is not JobState.QUEUED:
            self.watcher.release(self.inbox / job.path)
        self.problem = self.runner.retry_problem
        self.on_status(current=None, backend_problem=self.runner.retry_problem)
        return self.problem is not None

    def _refuse_unstable(self, item: Unstable) -> None:
        rel = item.path.relative_to(self.inbox).as_posix()
        job_id = self.store.enqueue(rel)
        job = self.store.claim(job_id) if job_id is not None else None
        if job is not None:
            try:
                self.runner.refuse(job, InputError(
                    f"{item.path.name} kept changing for {item.waited:.0f} s",
                    "make sure whatever writes the file has finished, then drop it into the inbox again",
                    code=InputCode.UNSTABLE))
            except BaseException:
                self._put_back.append(job.id)
                raise
        self.watcher.release(item.path)
