"""Runs one job: inbox file -> staged output -> final output -> input to done/ (or failed/).

Each step that touches the filesystem is recorded in the job store first and is idempotent, so
after a crash the same job simply runs again and skips what already happened:

1. open the input through directory handles (``handles.py``: no symlinked folder is followed),
   hash it through that handle; record hash + output name.
2. translate into a short hidden staging file next to the final output (``.asmr-jobN.partial``:
   a 250-byte script name must still fit); record the staged file's hash.
3. rename the staging file to the final name (atomic: a reader sees no output or all of it),
   or beside it (``NAME.zh (1).EXT``) when the final name holds a file the user changed
   (``output_files.publish_staged``; a review report staged beside it moves along).
   A final output whose hash was recorded for this job is never written again.
4. record where the input goes, move it there relative to the folders' handles (no clobbering),
   mark the job done.

``translate_file(src, dest)`` does the actual work and raises ``InputError`` for files that are
not valid scripts. ``src`` is a private link to the handle that was checked (``workspace.py``),
so the translator reads exactly the file that was checked, whatever happens to the inbox.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from asmr_daemon import db as sqlite_db
from asmr_daemon.errors import BackendUnavailable, InputCode, InputError
from asmr_daemon.output_files import publish_staged, read_record, review_path, written_by_us
from asmr_daemon.scripts.writer import output_name
from asmr_daemon.watch.handles import OutsideInbox, Source, open_source, opened_dir
from asmr_daemon.watch.jobs import Job, JobCode, JobState, JobStore
from asmr_daemon.watch.moves import Mover, NotMovable, signature
from asmr_daemon.watch.workspace import Workspace, hash_fd, hash_or_none

log = logging.getLogger(__name__)

TranslateFile = Callable[[Path, Path], None]

# Writing outputs failed because of the machine, not the file: keep the job queued, retry later.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
NAME_MAX = 255


@dataclass(frozen=True, slots=True)
class Folders:
    inbox: Path
    outbox: Path
    done: Path
    failed: Path


def storage_problem(exc: BaseException) -> str | None:
    """A one-line reason when ``exc`` is a full, read-only or forbidden disk, else None."""
    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{os.strerror(exc.errno or 0).lower()}{where}"
    if sqlite_db.is_storage_error(exc):
        return f"state database: {exc}"
    return None


class JobRunner:
    """Processes claimed jobs. Used by one worker thread at a time."""

    def __init__(self, store: JobStore, folders: Folders, translate_file: TranslateFile, *,
                 max_attempts: int = 3, work_dir: Path | None = None, share_group: bool = False) -> None:
        self.store = store
        self.folders = folders
        self.translate_file = translate_file
        self.max_attempts = max_attempts
        self.share_group = share_group  # ``[output] group_from_inbox``
        self.mover = Mover(store, folders.failed)
        self.workspace = Workspace(work_dir or store.path.parent / "work")
        # Why the last job went back to the queue without being at fault (the generation server is
        # down, a disk is full), else None: the worker then waits before claiming again.
        self.retry_problem: str | None = None

    @property
    def backend_problem(self) -> str | None:
        return self.retry_problem

    def process(self, job: Job) -> JobState:
        """Run ``job`` (already claimed) to done or failed; unexpected errors requeue it until the
        attempt limit; an unreachable generation server or a full/read-only disk requeue it
        without counting. Never raises for a bad file."""
        self.retry_problem = None
        try:
            return self._process(job)
        except BackendUnavailable as exc:
            return self._requeue_uncounted(job, JobCode.BACKEND, str(exc))
        except (OSError, sqlite3.OperationalError) as exc:
            problem = storage_problem(exc)
            if problem is None:
                return self._unexpected(job, exc)
            return self._requeue_uncounted(job, JobCode.STORAGE, problem)
        except Exception as exc:  # noqa: BLE001 - one file must never take the daemon down
            return self._unexpected(job, exc)

    def _requeue_uncounted(self, job: Job, code: JobCode, problem: str) -> JobState:
        # A server restart or a full disk must never fail files: queued again, attempt not counted.
        log.warning("job %d (%s) stays queued: %s", job.id, job.source, problem)
        self.retry_problem = problem
        self.store.requeue(job.id, code, problem, count_attempt=False)
        return JobState.QUEUED

    def _unexpected(self, job: Job, exc: Exception) -> JobState:
        log.error("job %d (%s) failed unexpectedly (attempt %d)", job.id, job.source, job.attempts,
                  exc_info=exc)
        detail = f"{type(exc).__name__}: {exc}"
        if job.attempts < self.max_attempts:
            self.store.requeue(job.id, JobCode.INTERNAL, detail)
            return JobState.QUEUED
        try:
            return self._fail_source(job, JobCode.INTERNAL, f"unexpected error: {detail}",
                                     "see the daemon's log (journalctl --user -u asmr-daemon); "
                                     "drop the file again to retry")
        except Exception:  # noqa: BLE001
            log.exception("job %d: could not move %s to failed/", job.id, job.source)
            self.store.fail(job.id, JobCode.INTERNAL, detail)
            return JobState.FAILED

    def refuse(self, job: Job, error: InputError) -> JobState:
        """Fail a claimed job without reading the file (e.g. it never stopped changing)."""
        return self._fail_source(job, error.code, error.message, error.hint)

    # -- the steps -------------------------------------------------------------------------

    def _process(self, job: Job) -> JobState:
        if job.moved_to and os.path.lexists(job.moved_to) and self.mover.finish_interrupted(job, self._open):
            return self.mover.complete(job)
        return self._with_source(job, self._translate_and_move)

    def _open(self, job: Job) -> Source:
        with opened_dir(self.folders.inbox) as inbox_fd:
            return open_source(inbox_fd, PurePosixPath(job.path), inbox_path=str(self.folders.inbox))

    def _with_source(self, job: Job, step: Callable[[Job, Source], JobState]) -> JobState:
        try:
            source = self._open(job)
        except FileNotFoundError:
            self.store.fail(job.id, JobCode.GONE, "the file disappeared from the inbox before it was translated")
            log.info("job %d: %s is gone", job.id, job.source)
            return JobState.FAILED
        except OutsideInbox as exc:
            # A folder on the way is a symlink now: nothing is read, nothing is moved.
            return self.mover.fail_in_place(job, JobCode.OUTSIDE_INBOX,
                                            f"{job.source} is no longer inside the inbox: {exc}",
                                            "put the file itself into the inbox, not a link to its folder")
        try:
            return step(job, source)
        finally:
            source.close()

    def _translate_and_move(self, job: Job, source: Source) -> JobState:
        refusal = self._refusal(job, source)
        if refusal is not None:
            return self._fail(job, source, *refusal)
        assert source.fd is not None
        rel = PurePosixPath(job.path)
        output_rel = rel.parent / output_name(rel.name)
        self.store.record_input(job.id, hash_fd(source.fd), output_rel.as_posix())
        job = self.store.get(job.id) or job
        final = self.folders.outbox / output_rel
        if job.output_sha256 and hash_or_none(final) == job.output_sha256:
            log.info("job %d: output %s was already written before a restart", job.id, output_rel)
        elif _made_from(final, job.sha256):
            # The queue was lost (set aside when damaged): the record beside the output says it is
            # ours, unchanged, and made from these very bytes, so it is not translated twice.
            log.info("job %d: %s already holds the translation of these bytes", job.id, output_rel)
        else:
            error = self._write_output(job, source, final)
            if error is not None:
                return self._fail(job, source, error.code, error.message, error.hint)
        try:
            self.mover.move(job, source, self.folders.done)
        except NotMovable as exc:
            self.store.finish(job.id)
            self.store.leave_in_place(job.id, signature(source.st), f"translated; {exc}")
            log.warning("job %d: %s was translated but %s", job.id, job.source, exc)
            return JobState.DONE
        self.store.finish(job.id)
        log.info("job %d: %s -> %s", job.id, job.source, output_rel)
        return JobState.DONE

    def _refusal(self, job: Job, source: Source) -> tuple[str, str, str | None] | None:
        """(code, message, hint) when the opened source must go to failed/ without being read."""
        name = PurePosixPath(job.path).name
        if job.raw_source is not None:
            return (JobCode.BAD_NAME, f"the name {PurePosixPath(job.source).name} is not valid UTF-8",
                    "rename the file (UTF-8 name) and drop it into the inbox again")
        if len(os.fsencode(output_name(name))) > NAME_MAX:
            return (JobCode.BAD_NAME, f"the output name for {name} would be longer than {NAME_MAX} bytes",
                    "shorten the file name and drop it into the inbox again")
        if source.outside is not None:
            return (InputCode.OUTSIDE_INBOX, f"{name} is {source.outside}",
                    "copy the file into the inbox instead of linking to it")
        if source.unreadable is not None:
            return ("unreadable", f"{name} cannot be read: {source.unreadable}",
                    "give the daemon's user read permission, then drop the file again")
        if source.fd is None:
            return (InputCode.NOT_REGULAR, f"{name} is not a regular file", "drop the script file itself")
        return None

    def _write_output(self, job: Job, source: Source, final: Path) -> InputError | None:
        """Translate into the staging file and rename it into place; the file's own problem is
        returned (its message naming the inbox path), anything else raised."""
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Hidden, short, job-specific name: never mistaken for a finished output, ignored by sync
        # tools, and within NAME_MAX whatever the script is called.
        staged = final.with_name(f".asmr-job{job.id}.partial")
        if not (job.output_sha256 and hash_or_none(staged) == job.output_sha256):
            with self.workspace.link(job, source) as src:
                try:
                    self.translate_file(src, staged)
                except InputError as exc:
                    _unlink(staged, review_path(staged))
                    shown = str(self.folders.inbox / PurePosixPath(job.source))
                    return InputError(exc.message.replace(str(src), shown), exc.hint, code=exc.code)
                except BaseException:
                    _unlink(staged, review_path(staged))
                    raise
            self.store.record_output(job.id, hash_or_none(staged) or "")
        published = publish_staged(staged, final, source_sha256=job.sha256)
        if published.reason:
            log.warning("job %d: output written as %s: %s", job.id, published.path, published.reason)
        if self.share_group:
            _share_with_group(self.folders.inbox, published.path, review_path(published.path))
        return None

    def _fail_source(self, job: Job, code: str, message: str, hint: str | None) -> JobState:
        return self._with_source(job, lambda job, source: self._fail(job, source, code, message, hint))

    def _fail(self, job: Job, source: Source, code: str, message: str, hint: str | None) -> JobState:
        detail = f"{message} ({hint})" if hint else message
        try:
            dest = self.mover.move(job, source, self.folders.failed, failure=(str(code), detail))
        except NotMovable as exc:
            self.store.leave_in_place(job.id, signature(source.st), f"{detail}; {exc}")
            return self.mover.fail_in_place(job, code, message, f"{hint or 'fix the file'}; {exc}")
        self.mover.report(dest, str(code), message, hint)
        self.store.fail(job.id, str(code), detail)
        log.warning("job %d: %s -> failed/ (%s): %s", job.id, job.source, code, detail)
        return JobState.FAILED


def _share_with_group(inbox: Path, *paths: Path) -> None:
    """Give outputs the inbox folder's group, readable by it (``[output] group_from_inbox``)."""
    gid = os.stat(inbox).st_gid
    for path in paths:
        if os.path.isfile(path) and not os.path.islink(path):
            os.chown(path, -1, gid)
            os.chmod(path, 0o640)


def _made_from(output: Path, source_sha256: str | None) -> bool:
    record = read_record(output)
    return bool(source_sha256 and record and record.get("source_sha256") == source_sha256
                and written_by_us(output))


def _unlink(*paths: Path) -> None:
    for path in paths:
        with suppress(FileNotFoundError):
            os.unlink(path)
