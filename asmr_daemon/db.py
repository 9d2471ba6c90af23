"""The one SQLite helper of the durable stores (translation memory, job queue).

* ``connect``: WAL (readers never wait for the writer), autocommit mode (transactions are
  explicit), the file created 0600 whatever the umask (SQLite gives its -wal/-shm files the
  database file's mode).
* ``transaction``: ``BEGIN IMMEDIATE`` ... ``COMMIT``, ``ROLLBACK`` on any exception.
* ``migrate``: numbered migrations recorded in ``migrations (id, name, applied)``, applied in one
  transaction, so two processes opening a fresh file do not both migrate it. Databases written
  before both stores shared this helper had a job-queue table without ``name``; it is brought
  forward in place.
* ``open_database``: connect + integrity check + migrate; a corrupt file is set aside as
  ``NAME.corrupt-YYYYmmdd-HHMMSS`` (with its -wal/-shm) and a new one started, because a crash
  loop under systemd helps nobody.
"""

from __future__ import annotations

import datetime
import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from asmr_daemon.private import private_file

log = logging.getLogger(__name__)

Migration = tuple[str, str]  # (name, SQL script; statements separated by ";")

# SQLITE_CORRUPT and SQLITE_NOTADB: the file is damaged or not a database at all.
_CORRUPT_CODES = {11, 26}


def is_corrupt(exc: BaseException) -> bool:
    """Whether ``exc`` says the database file itself is damaged (not locked, full or read-only)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _CORRUPT_CODES
    text = str(exc)
    return "malformed" in text or "not a database" in text


def is_storage_error(exc: BaseException) -> bool:
    """Disk full, read-only or unopenable: the environment, not the data (retry later)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    text = str(exc).lower()
    return any(s in text for s in ("disk is full", "readonly", "read-only", "unable to open", "disk i/o"))


def connect(path: Path, *, timeout: float = 30.0, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """Open (creating 0600) ``path`` in WAL and autocommit mode."""
    if not path.exists():
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        private_file(path.with_name(name))
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction; the caller serialises threads sharing ``conn``."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _upgrade_migrations_table(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> None:
    columns = [row[1] for row in conn.execute("PRAGMA table_info(migrations)")]
    if not columns:
        conn.execute("CREATE TABLE migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)")
        return
    if "name" in columns:
        return
    # The job queue's first layout: (id, applied REAL seconds). Same numbers, named, ISO times.
    conn.execute("ALTER TABLE migrations RENAME TO migrations_old")
    conn.execute("CREATE TABLE migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)")
    for number, applied in conn.execute("SELECT id, applied FROM migrations_old").fetchall():
        name = migrations[number - 1][0] if 0 < number <= len(migrations) else "unknown"
        stamp = datetime.datetime.fromtimestamp(float(applied), datetime.UTC).isoformat(timespec="seconds")
        conn.execute("INSERT INTO migrations (id, name, applied) VALUES (?, ?, ?)", (number, name, stamp))
    conn.execute("DROP TABLE migrations_old")


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> list[int]:
    """Apply the migrations not applied yet, in one transaction; returns their numbers."""
    applied: list[int] = []
    with transaction(conn):
        _upgrade_migrations_table(conn, migrations)
        done = {row[0] for row in conn.execute("SELECT id FROM migrations")}
        for number, (name, script) in enumerate(migrations, start=1):
            if number in done:
                continue
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
            conn.execute("INSERT INTO migrations (id, name, applied) VALUES (?, ?, ?)", (number, name, _now()))
            applied.append(number)
    return applied


def set_aside(path: Path) -> Path:
    """Rename a damaged database (and its -wal/-shm) to ``NAME.corrupt-YYYYmmdd-HHMMSS``."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, target.with_name(target.name + suffix))
    os.replace(path, target)
    return target


def open_database(path: Path, migrations: Sequence[Migration], *, what: str, timeout: float = 30.0,
                  synchronous: str = "NORMAL") -> tuple[sqlite3.Connection, Path | None]:
    """Connect, check and migrate ``path``; a corrupt file is set aside and a new one started.
    Returns the connection and where the corrupt file went (None when it was sound)."""
    aside: Path | None = None
    for _ in range(2):
        conn = None
        try:
            conn = connect(path, timeout=timeout, synchronous=synchronous)
            row = conn.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed ({row[0] if row else 'no answer'})")
            migrate(conn, migrations)
            return conn, aside
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            if not is_corrupt(exc) or aside is not None:
                raise
            aside = set_aside(path)
            log.error("the %s %s is damaged (%s): set aside as %s, starting a new one", what, path, exc, aside.name)
    raise AssertionError("unreachable")
