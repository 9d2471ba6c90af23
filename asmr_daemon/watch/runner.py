"""Runs one job: inbox file -> staged output -> final output -> input to done/ (or failed/).

Each step that touches the filesystem is recorded in the job store first and is idempotent, so
after a crash the same job simply runs again and skips what already happened:

1. hash the input; record hash + output name.
2. translate into a hidden staging file next to the final output; record the staged file's hash.
3. rename the staging file to the final name (atomic: a reader sees no output or all of it).
   A final output whose hash was recorded for this job is never written again.
4. record where the input goes, move it there (no clobbering), mark the job done.

``translate_file(src, dest)`` does the actual work (read, translate, write ``dest`` atomically)
and raises ``InputError`` for files that are not valid scripts; it is injected so the queue and
the watcher can be tested with a fake, and so the daemon shares the ``translate`` CLI's code path.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from asmr_daemon.errors import BackendUnavailable, InputError
from asmr_daemon.watch.filters import InboxFilter
from asmr_daemon.watch.jobs import Job, JobCode, JobState, JobStore
from asmr_daemon.watch.outputs import (
    error_report_path,
    move_no_clobber,
    unique_destination,
    write_failure,
)

log = logging.getLogger(__name__)

TranslateFile = Callable[[Path, Path], None]


@dataclass(frozen=True, slots=True)
class Folders:
    inbox: Path
    outbox: Path
    done: Path
    failed: Path


def output_name(name: str) -> str:
    """``NAME.EXT`` -> ``NAME.zh.EXT`` (``NAME`` -> ``NAME.zh``)."""
    try:  # the shared definition, once the scripts package provides it
        from asmr_daemon.scripts import output_name as shared
    except ImportError:
        stem, dot, ext = name.rpartition(".")
        return f"{stem}.zh.{ext}" if dot and stem else f"{name}.zh"
    return shared(name)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hash_or_none(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


class JobRunner:
    """Processes claimed jobs. Used by one worker thread at a time."""

    def __init__(self, store: JobStore, folders: Folders, translate_file: TranslateFile, *,
                 max_attempts: int = 3) -> None:
        self.store = store
        self.folders = folders
        self.translate_file = translate_file
        self.max_attempts = max_attempts
        self.filter = InboxFilter.for_folders(folders.inbox, folders.outbox, folders.done, folders.failed)
        # Why the last job went back to the queue without being at fault (the generation server is
        # down), else None: the worker then waits before claiming again instead of spinning.
        self.backend_problem: str | None = None

    def process(self, job: Job) -> JobState:
        """Run ``job`` (already claimed) to done or failed; unexpected errors requeue it until the
        attempt limit, an unreachable generation server requeues it without counting. Never raises
        for a bad file."""
        self.backend_problem = None
        try:
            return self._process(job)
        except BackendUnavailable as exc:
            # A server restart must never fail files: keep the job queued, attempt not counted.
            log.warning("job %d (%s) stays queued: %s", job.id, job.source, exc)
            self.backend_problem = str(exc)
            self.store.requeue(job.id, JobCode.BACKEND, str(exc), count_attempt=False)
            return JobState.QUEUED
        except Exception as exc:  # noqa: BLE001 - one file must never take the daemon down
            log.exception("job %d (%s) failed unexpectedly (attempt %d)", job.id, job.source, job.attempts)
            detail = f"{type(exc).__name__}: {exc}"
            if job.attempts >= self.max_attempts:
                try:
                    return self._fail(job, JobCode.INTERNAL, f"unexpected error: {detail}",
                                      "see the daemon's log (journalctl --user -u asmr-daemon); "
                                      "drop the file again to retry")
                except Exception:  # noqa: BLE001
                    log.exception("job %d: could not move %s to failed/", job.id, job.source)
                    self.store.fail(job.id, JobCode.INTERNAL, detail)
                    return JobState.FAILED
            self.store.requeue(job.id, JobCode.INTERNAL, detail)
            return JobState.QUEUED

    def refuse(self, job: Job, error: InputError) -> JobState:
        """Fail a claimed job without reading the file (e.g. it never stopped changing)."""
        try:
            return self._fail(job, error.code, error.message, error.hint)
        except FileNotFoundError:
            self.store.fail(job.id, JobCode.GONE, "the file disappeared from the inbox before it was translated")
            return JobState.FAILED

    # -- the steps -------------------------------------------------------------------------

    def _process(self, job: Job) -> JobState:
        rel = PurePosixPath(job.source)
        src = self.folders.inbox / rel
        if job.moved_to and os.path.lexists(job.moved_to):
            # Crashed during or after the final move: finish only the bookkeeping.
            if os.path.lexists(src) and os.path.samestat(os.lstat(src), os.lstat(job.moved_to)):
                os.unlink(src)  # both names of one hard link: the move was half done
            if not os.path.lexists(src):
                return self._complete_move(job)
        if not os.path.lexists(src):
            self.store.fail(job.id, JobCode.GONE, "the file disappeared from the inbox before it was translated")
            log.info("job %d: %s is gone", job.id, job.source)
            return JobState.FAILED

        refusal = self.filter.refusal(src)
        if refusal is not None:
            return self._fail(job, refusal.code, refusal.message, refusal.hint)

        digest = sha256_file(src)
        output_rel = rel.parent / output_name(rel.name)
        self.store.record_input(job.id, digest, output_rel.as_posix())
        job = self.store.get(job.id) or job
        final = self.folders.outbox / output_rel
        if job.output_sha256 and _hash_or_none(final) == job.output_sha256:
            log.info("job %d: output %s was already written before a restart", job.id, output_rel)
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            # Hidden, job-specific name: never mistaken for a finished output, ignored by sync tools.
            staged = final.with_name(f".{final.name}.job{job.id}.partial")
            if not (job.output_sha256 and _hash_or_none(staged) == job.output_sha256):
                try:
                    self.translate_file(src, staged)
                except InputError as exc:
                    _unlink(staged)
                    return self._fail(job, exc.code, exc.message, exc.hint)
                except BaseException:
                    _unlink(staged)
                    raise
                self.store.record_output(job.id, sha256_file(staged))
            os.replace(staged, final)

        self._move(job, src, unique_destination(self.folders.done / rel))
        self.store.finish(job.id)
        log.info("job %d: %s -> %s", job.id, job.source, output_rel)
        return JobState.DONE

    def _fail(self, job: Job, code: str, message: str, hint: str | None) -> JobState:
        rel = PurePosixPath(job.source)
        src = self.folders.inbox / rel
        detail = f"{message} ({hint})" if hint else message
        dest = self._move(job, src, unique_destination(self.folders.failed / rel, also_free=(".error.txt",)),
                          failure=(str(code), detail))
        write_failure(dest, str(code), message, hint)
        self.store.fail(job.id, str(code), detail)
        log.warning("job %d: %s -> failed/ (%s): %s", job.id, job.source, code, detail)
        return JobState.FAILED

    def _complete_move(self, job: Job) -> JobState:
        moved = Path(job.moved_to or "")
        if job.error_code and _is_within(moved, self.folders.failed):
            if not error_report_path(moved).exists():
                write_failure(moved, job.error_code, job.error_detail or "unknown error")
            self.store.fail(job.id, job.error_code, job.error_detail or "")
            return JobState.FAILED
        self.store.finish(job.id)
        return JobState.DONE

    def _move(self, job: Job, src: Path, dest: Path, failure: tuple[str, str] | None = None) -> Path:
        """Record where ``src`` goes, then move it there without overwriting; returns where it went."""
        for _ in range(100):
            self.store.record_move(job.id, dest, failure=failure)
            try:
                move_no_clobber(src, dest)
                return dest
            except FileExistsError:
                # Someone took the name between choosing and moving: choose again (never overwrite).
                dest = unique_destination(dest, also_free=(".error.txt",) if failure else ())
        raise FileExistsError(f"no free name for {src.name} in {dest.parent}")


def _is_within(path: Path, folder: Path) -> bool:
    path, folder = Path(os.path.abspath(path)), Path(os.path.abspath(folder))
    return path == folder or folder in path.parents


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
