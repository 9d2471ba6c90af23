"""Moving a processed input to done/ or failed/ through folder handles, and its failure report.

Nothing here ever overwrites: a taken name gets `` (1)``, `` (2)``... (``outputs.numbered``).
Subfolders are mirrored (``inbox/a/b.txt`` -> ``done/a/b.txt``), each created and entered without
following symlinks, so a swapped folder in done/ or failed/ (which may lie inside the inbox)
cannot send a file or a report elsewhere. An input that cannot be removed from the inbox is
never copied: it stays where it is, reported once (``NotMovable``).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from asmr_daemon.watch import handles
from asmr_daemon.watch.filters import is_within
from asmr_daemon.watch.handles import OutsideInbox, Source
from asmr_daemon.watch.jobs import Job, JobState, JobStore, display_name
from asmr_daemon.watch.outputs import error_report, numbered_name, report_name

log = logging.getLogger(__name__)


class NotMovable(Exception):
    """The input cannot be moved out of the inbox (no permission there, read-only, replaced)."""


def signature(st: os.stat_result) -> str:
    """Which file this is, for "do not queue it again": device, inode, size, mtime."""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def lstat_signature(path: Path) -> str | None:
    try:
        return signature(os.lstat(path))
    except OSError:
        return None


def private_dir(path: Path) -> int:
    """A handle on the daemon's own folder ``path`` (created 0700 when missing)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return handles.open_dir(path)


class Mover:
    def __init__(self, store: JobStore, failed: Path) -> None:
        self.store = store
        self.failed = failed

    def move(self, job: Job, source: Source, folder: Path, failure: tuple[str, str] | None = None) -> Path:
        """Record where ``source`` goes, then rename it there without overwriting; returns where
        it went. Raises NotMovable when it cannot leave the inbox."""
        rel = PurePosixPath(job.path)
        root = private_dir(folder)
        try:
            dest_fd = handles.walk_dirs(root, rel.parts[:-1], create=True)
        finally:
            os.close(root)
        try:
            return self._rename(job, source, dest_fd, folder / rel.parent, rel.name, failure)
        finally:
            os.close(dest_fd)

    def _rename(self, job: Job, source: Source, dest_fd: int, dest_dir: Path, name: str,
                failure: tuple[str, str] | None) -> Path:
        n = 0
        while True:
            candidate = numbered_name(name, n)
            n += 1
            if handles.exists_at(dest_fd, candidate) or (
                    failure and handles.exists_at(dest_fd, report_name(candidate))):
                continue
            if not source.unchanged():
                raise NotMovable("it was replaced in the inbox meanwhile, so it stays there")
            self.store.record_move(job.id, dest_dir / candidate, failure=failure)
            try:
                _rename_or_copy(source, dest_fd, candidate)
            except FileExistsError:
                continue  # taken between the check and the rename: choose again, never overwrite
            except OSError as exc:
                if not _inbox_side(exc, source):
                    raise
                raise NotMovable(f"it cannot be moved out of the inbox ({exc.strerror}), "
                                 "so it stays there") from exc
            return dest_dir / candidate

    def report(self, moved: Path, code: str, message: str, hint: str | None) -> None:
        """Write ``NAME.error.txt`` beside the moved input (in a folder the move created)."""
        with handles.opened_dir(moved.parent) as dir_fd:
            text = error_report(display_name(moved.name), code, message, hint)
            handles.write_at(dir_fd, report_name(moved.name), text.encode("utf-8"))

    def fail_in_place(self, job: Job, code: str, message: str, hint: str | None) -> JobState:
        """Fail a job whose input cannot (or must not) be moved: the report goes to failed/
        under the input's name, the input stays where it is."""
        rel = PurePosixPath(job.path)
        detail = f"{message} ({hint})" if hint else message
        try:
            root = private_dir(self.failed)
            try:
                dir_fd = handles.walk_dirs(root, rel.parts[:-1], create=True)
            finally:
                os.close(root)
            try:
                n = 0
                while handles.exists_at(dir_fd, report_name(numbered_name(rel.name, n))):
                    n += 1
                text = error_report(display_name(rel.name), str(code), message, hint).encode("utf-8")
                handles.write_at(dir_fd, report_name(numbered_name(rel.name, n)), text)
            finally:
                os.close(dir_fd)
        except (OSError, OutsideInbox) as exc:
            log.warning("job %d: no report for %s in failed/: %s", job.id, job.source, exc)
        self.store.fail(job.id, str(code), detail)
        log.warning("job %d: %s failed (%s), left where it is: %s", job.id, job.source, code, detail)
        return JobState.FAILED

    def finish_interrupted(self, job: Job, open_source: Callable[[Job], Source]) -> bool:
        """``job.moved_to`` exists: True when the input is out of the inbox (a crash after the
        move), after removing the inbox name of a half-done hard-link move of older versions."""
        try:
            source = open_source(job)
        except FileNotFoundError:
            return True
        except OutsideInbox:
            return False
        try:
            moved = os.lstat(job.moved_to or "")
            if (moved.st_dev, moved.st_ino) != (source.st.st_dev, source.st.st_ino):
                return False
            os.unlink(source.name, dir_fd=source.parent_fd)
            return True
        finally:
            source.close()

    def complete(self, job: Job) -> JobState:
        """Finish the bookkeeping of a job whose input was already moved."""
        moved = Path(job.moved_to or "")
        if job.error_code and is_within(Path(os.path.abspath(moved)), Path(os.path.abspath(self.failed))):
            if not moved.with_name(report_name(moved.name)).exists():
                self.report(moved, job.error_code, job.error_detail or "unknown error", None)
            self.store.fail(job.id, job.error_code, job.error_detail or "")
            return JobState.FAILED
        self.store.finish(job.id)
        return JobState.DONE


def _rename_or_copy(source: Source, dest_fd: int, name: str) -> None:
    try:
        handles.rename_no_replace(source.parent_fd, source.name, dest_fd, name)
    except OSError as exc:
        if exc.errno != errno.EXDEV:  # another filesystem (or mount): copy, then remove
            raise
        handles.copy_then_unlink(source, dest_fd, name)


def _inbox_side(exc: OSError, source: Source) -> bool:
    """Whether a failed rename is the inbox's fault (we may not remove the file there)."""
    if exc.errno in (errno.EPERM, errno.EBUSY):
        return True
    if exc.errno in (errno.EACCES, errno.EROFS):
        try:
            return not os.access(".", os.W_OK, dir_fd=source.parent_fd)
        except (NotImplementedError, OSError):
            return True
    return False
