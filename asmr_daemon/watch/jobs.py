"""Durable job queue: one SQLite file in the state dir.

A job is one dropped file: its path relative to the inbox, its content hash, a state
(queued -> running -> done | failed), attempts, an error code + detail, where the output and the
input went, and timestamps. Every public write is one transaction, so a crash (kill -9, power
loss) leaves each job in a state recorded before or after the step, never half-way.

Steps of a job that touch the filesystem are recorded *before* they happen (content hash, output
hash, where the input moves), and replayed idempotently after a crash: see ``runner.py``.
"""

from __future__ import annotations

import enum
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from asmr_daemon import db as sqlite_db
from asmr_daemon.private import private_dir


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class JobCode(enum.StrEnum):
    """Failure codes of jobs that are not about the file's content (those are ``InputCode``)."""

    GONE = "gone"          # the file disappeared from the inbox before it was translated
    INTERNAL = "internal"  # an unexpected error, retried up to the attempt limit
    CRASHED = "crashed"    # the daemon died while working on it too many times (e.g. out of memory)
    BACKEND = "backend-unavailable"  # the generation server was down: queued again, attempt not counted
    STORAGE = "storage"    # disk full / read-only / no permission writing outputs: queued again, not counted
    BAD_NAME = "bad-name"  # the file name is not UTF-8, or its output or report name would be too long
    OUTSIDE_INBOX = "outside-inbox"  # a folder on the way was swapped for a symlink: nothing was moved
    NOT_MOVABLE = "not-movable"  # the input could not be moved out of the inbox (left in place, reported once)


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    source: str            # relative to the inbox, POSIX separators
    state: JobState
    attempts: int
    sha256: str | None
    output: str | None     # relative to the outbox
    output_sha256: str | None
    moved_to: str | None   # absolute path the input was (or is being) moved to
    error_code: str | None
    error_detail: str | None
    created: float
    started: float | None
    finished: float | None
    raw_source: bytes | None = None  # the name's bytes when they are not UTF-8 (``source`` shows them escaped)
    left_in_place: str | None = None  # signature of an input that could not be moved (not queued again)

    @property
    def path(self) -> str:
        """The source as the filesystem spells it (undecodable bytes as surrogates)."""
        return os.fsdecode(self.raw_source) if self.raw_source is not None else self.source


# Numbered migrations: append, never edit one that has shipped.
MIGRATIONS: tuple[sqlite_db.Migration, ...] = (
    ("create jobs", """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        sha256 TEXT,
        output TEXT,
        output_sha256 TEXT,
        moved_to TEXT,
        error_code TEXT,
        error_detail TEXT,
        created REAL NOT NULL,
        started REAL,
        finished REAL,
        updated REAL NOT NULL
    );
    CREATE INDEX jobs_state ON jobs (state, id);
    CREATE INDEX jobs_source ON jobs (source, state);
    """),
    ("undecodable names, inputs left in place", """
    ALTER TABLE jobs ADD COLUMN raw_source BLOB;
    ALTER TABLE jobs ADD COLUMN left_in_place TEXT
    """),
)

_COLUMNS = ("id, source, state, attempts, sha256, output, output_sha256, moved_to, error_code, "
            "error_detail, created, started, finished, raw_source, left_in_place")


def display_name(path: str) -> str:
    """A path that SQLite can store as text: undecodable bytes shown as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


class JobStore:
    """The queue. Thread-safe: one connection guarded by a lock (writes are tiny)."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()
        private_dir(path.parent)
        # synchronous=FULL: a committed step survives power loss. A damaged file is set aside
        # (``set_aside`` says where) and the daemon rescans the inbox into the new queue.
        self._db, self.set_aside = sqlite_db.open_database(path, MIGRATIONS, what="job queue",
                                                           synchronous="FULL")
        self._db.row_factory = sqlite3.Row

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, sqlite_db.transaction(self._db) as db:
            yield db

    def _update(self, job_id: int, **values: object) -> None:
        values["updated"] = self._clock()
        assignments = ", ".join(f"{key} = ?" for key in values)
        with self._transaction() as db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*values.values(), job_id))

    @staticmethod
    def _job(row: sqlite3.Row | None) -> Job | None:
        if row is None:
            return None
        data = dict(row)
        data["state"] = JobState(data["state"])
        if isinstance(data["moved_to"], bytes):
            data["moved_to"] = os.fsdecode(data["moved_to"])
        return Job(**data)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writes (one transaction each) ---------------------------------------------------------

    def enqueue(self, source: str, *, signature: str | None = None) -> int | None:
        """Add a job for ``source`` (relative to the inbox) unless one is already queued or
        running for it (a rescan or restart seeing the same file again); returns the job id.
        None when the newest job left this very file (same ``signature``) in the inbox because it
        could not be moved: it was reported once and is not translated again on every rescan."""
        now = self._clock()
        shown = display_name(source)
        raw = None if shown == source else os.fsencode(source)
        with self._transaction() as db:
            row = db.execute("SELECT id, state, left_in_place FROM jobs WHERE source = ? AND raw_source IS ? "
                             "ORDER BY id DESC LIMIT 1", (shown, raw)).fetchone()
            if row is not None and row["state"] in ("queued", "running"):
                return int(row["id"])
            if row is not None and signature is not None and row["left_in_place"] == signature:
                return None
            cursor = db.execute("INSERT INTO jobs (source, raw_source, state, created, updated) "
                                "VALUES (?, ?, 'queued', ?, ?)", (shown, raw, now, now))
            return int(cursor.lastrowid or 0)

    def claim(self, job_id: int | None = None) -> Job | None:
        """Mark the oldest queued job (or queued job ``job_id``) running, attempts + 1, and
        return it; None when there is none."""
        now = self._clock()
        with self._transaction() as db:
            if job_id is None:
                row = db.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1").fetchone()
            else:
                row = db.execute("SELECT id FROM jobs WHERE state = 'queued' AND id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET state = 'running', attempts = attempts + 1, started = ?, updated = ? "
                       "WHERE id = ?", (now, now, row[0]))
            return self._job(db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (row[0],)).fetchone())

    def record_input(self, job_id: int, sha256: str, output: str) -> None:
        """The input's content hash and the output it will produce. A different hash than an
        earlier attempt recorded (the file was replaced) invalidates that attempt's output."""
        with self._transaction() as db:
            db.execute("UPDATE jobs SET output_sha256 = CASE WHEN sha256 IS ? THEN output_sha256 END, "
                       "sha256 = ?, output = ?, updated = ? WHERE id = ?",
                       (sha256, sha256, output, self._clock(), job_id))

    def record_output(self, job_id: int, output_sha256: str) -> None:
        """The hash of the staged output, recorded before it is renamed to its final name."""
        self._update(job_id, output_sha256=output_sha256)

    def record_move(self, job_id: int, moved_to: Path, *, failure: tuple[str, str] | None = None) -> None:
        """Where the input is about to be moved (done/ or failed/, then with ``failure`` =
        (code, detail)), recorded before the move so a crash right after it can be finished."""
        code, detail = failure or (None, None)
        where: str | bytes = str(moved_to)
        if display_name(str(where)) != where:  # an undecodable name: kept as its bytes
            where = os.fsencode(where)
        self._update(job_id, moved_to=where, error_code=code, error_detail=detail)

    def leave_in_place(self, job_id: int, signature: str, detail: str) -> None:
        """The input could not be moved out of the inbox: remember which file it was."""
        self._update(job_id, left_in_place=signature, error_detail=detail)

    def finish(self, job_id: int) -> None:
        now = self._clock()
        with self._transaction() as db:  # a left-in-place note survives; an old error does not
            db.execute("UPDATE jobs SET state = 'done', finished = ?, updated = ?, error_code = NULL, "
                       "error_detail = CASE WHEN left_in_place IS NULL THEN NULL ELSE error_detail END "
                       "WHERE id = ?", (now, now, job_id))

    def fail(self, job_id: int, code: str, detail: str) -> None:
        self._update(job_id, state=JobState.FAILED.value, finished=self._clock(), error_code=str(code),
                     error_detail=detail)

    def requeue(self, job_id: int, code: str, detail: str, *, count_attempt: bool = True) -> None:
        """Put a running job back (an unexpected error worth another attempt). ``count_attempt=False``
        gives the attempt back: the job was not at fault (the generation server was down)."""
        if count_attempt:
            self._update(job_id, state=JobState.QUEUED.value, error_code=str(code), error_detail=detail)
            return
        with self._transaction() as db:
            db.execute("UPDATE jobs SET state = 'queued', attempts = MAX(0, attempts - 1), error_code = ?, "
                       "error_detail = ?, updated = ? WHERE id = ?", (str(code), detail, self._clock(), job_id))

    def recover(self, max_attempts: int) -> tuple[int, int]:
        """After a crash: running jobs go back to the queue, except those that already used
        ``max_attempts`` (each attempt killed the daemon, e.g. out of memory), which fail.
        Returns (requeued, failed)."""
        now = self._clock()
        with self._transaction() as db:
            failed = db.execute(
                "UPDATE jobs SET state = 'failed', finished = ?, updated = ?, error_code = ?, error_detail = ? "
                "WHERE state = 'running' AND attempts >= ?",
                (now, now, JobCode.CRASHED.value,
                 f"the daemon stopped unexpectedly during each of {max_attempts} attempts", max_attempts)).rowcount
            requeued = db.execute("UPDATE jobs SET state = 'queued', updated = ? WHERE state = 'running'",
                                  (now,)).rowcount
        return requeued, failed

    # -- reads ---------------------------------------------------------------------------------

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            return self._job(self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def jobs(self, state: JobState | None = None) -> list[Job]:
        with self._lock:
            if state is None:
                rows = self._db.execute(f"SELECT {_COLUMNS} FROM jobs ORDER BY id").fetchall()
            else:
                rows = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE state = ? ORDER BY id",
                                        (state.value,)).fetchall()
        return [self._job(row) for row in rows]  # type: ignore[misc]

    def active_sources(self) -> set[str]:
        with self._lock:
            rows = self._db.execute("SELECT source, raw_source FROM jobs "
                                    "WHERE state IN ('queued', 'running')").fetchall()
        return {os.fsdecode(row[1]) if row[1] is not None else row[0] for row in rows}

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        counts = {state.value: 0 for state in JobState}
        counts.update({row[0]: row[1] for row in rows})
        return counts

    def recent_failures(self, limit: int = 10) -> list[Job]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE state = 'failed' "
                                    "ORDER BY finished DESC, id DESC LIMIT ?", (limit,)).fetchall()
        return [self._job(row) for row in rows]  # type: ignore[misc]


def read_only_counts(path: Path) -> tuple[dict[str, int], list[Job]] | None:
    """Queue counts and the 10 latest failures for ``status``, without creating or migrating
    anything (None when there is no queue yet). Safe while the daemon writes (WAL)."""
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    db.row_factory = sqlite3.Row
    try:
        counts = {state.value: 0 for state in JobState}
        counts.update({row[0]: row[1] for row in db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")})
        rows = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE state = 'failed' "
                          "ORDER BY finished DESC, id DESC LIMIT 10").fetchall()
        return counts, [JobStore._job(row) for row in rows]  # type: ignore[misc]
    except sqlite3.DatabaseError:
        return None
    finally:
        db.close()
