"""Translation memory: finished translations and human corrections in SQLite.

* WAL mode, so the daemon writes while a CLI ``status`` (another process) or an editor's
  inlay-hint lookup (another thread) reads without waiting.
* One connection per thread (sqlite3 connections must not be shared between threads
  without care); every public write is one transaction.
* Numbered migrations, recorded in ``migrations`` and applied by the constructor inside
  ``BEGIN IMMEDIATE``, so two processes opening a fresh file do not both migrate it (``db.py``,
  shared with the job queue).
* Rows are content-addressed: ``translation_key`` hashes everything that decides the
  model's output (see its docstring). Corrections are keyed by source and context only:
  a human correction wins over any model's output, whatever adapter is loaded.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from asmr_daemon import db as sqlite_db
from asmr_daemon.engine.prompts import ContextLine, GlossaryEntry
from asmr_daemon.engine.requests import Translation
from asmr_daemon.private import private_dir

log = logging.getLogger(__name__)
_WHITESPACE = re.compile(r"\s+")

MIGRATIONS: tuple[sqlite_db.Migration, ...] = (
    ("create translations and corrections", """
        CREATE TABLE translations (
            key      TEXT PRIMARY KEY,
            source   TEXT NOT NULL,
            text     TEXT NOT NULL,
            problem  TEXT,
            identity TEXT NOT NULL,
            created  TEXT NOT NULL
        );
        CREATE TABLE corrections (
            source      TEXT NOT NULL,
            context_key TEXT NOT NULL,
            target      TEXT NOT NULL,
            created     TEXT NOT NULL,
            PRIMARY KEY (source, context_key)
        );
    """),
)


def normalize(text: str) -> str:
    """The form of a text that keys use: stripped, NFC, whitespace runs collapsed to one space.

    NFC rather than NFKC on purpose: NFKC folds full-width ！？～ and half-width katakana into
    other characters, and a script's punctuation is part of what the translator wrote.
    NFC only unifies encodings of the same character (e.g. か + combining dakuten = が).
    """
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text.strip()))


def context_key(context: Sequence[ContextLine]) -> str:
    """Hash of the context lines' *sources*.

    Their translations are hints that depend on what was already cached; keying on them
    would make the second run over the same file miss every line the first run translated.
    No context is the empty string, the default of ``record_correction``.
    """
    if not context:
        return ""
    return _sha256([normalize(c.source) for c in context])


def translation_key(source: str, *, context: Sequence[ContextLine] = (),
                    glossary: Sequence[GlossaryEntry] = (), identity: str, template: str,
                    decoding: Any) -> str:
    """sha256 of everything that decides the model's output for one segment.

    ``decoding`` is a dataclass (``DecodingSettings``) or a mapping; all its fields count.
    """
    if dataclasses.is_dataclass(decoding) and not isinstance(decoding, type):
        decoding = dataclasses.asdict(decoding)
    return _sha256({
        "v": 1,
        "source": normalize(source),
        "context": [normalize(c.source) for c in context],
        "glossary": [[normalize(e.source), e.target, e.note] for e in glossary],
        "identity": identity,
        "template": template,
        "decoding": dict(decoding),
    })


def _sha256(value: Any) -> str:
    data = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


QUERY_KEYS = 500  # per query: well under SQLite's limit on parameters


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), QUERY_KEYS):
        yield values[start : start + QUERY_KEYS]


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class TranslationMemory:
    """The memory. A damaged file is set aside at start (``memory.sqlite.corrupt-DATE``, see
    ``db.open_database``) and a new one started; a read that fails later (a bad page) is a cache
    miss and a failed write of a model output is logged: the memory only saves work, it must
    never fail a file."""

    def __init__(self, path: Path, *, timeout: float = 10.0) -> None:
        self.path = Path(path)
        private_dir(self.path.parent)
        self._timeout = timeout
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._reported: set[str] = set()
        conn, self.set_aside = sqlite_db.open_database(self.path, MIGRATIONS, what="translation memory",
                                                       timeout=timeout)
        self._adopt(conn)

    # -- connections and failures -----------------------------------------------------------

    def _adopt(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        self._local.conn = conn
        with self._all_lock:
            self._all.append(conn)
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._adopt(sqlite_db.connect(self.path, timeout=self._timeout))
        return conn

    def _failed(self, what: str, exc: sqlite3.Error) -> None:
        """Log a read or write that failed, once per kind of error (not once per line)."""
        key = f"{what}: {exc}"
        if key not in self._reported:
            self._reported.add(key)
            log.warning("translation memory %s: a %s failed (%s); %s", self.path, what, exc,
                        "treated as not cached" if what == "read" else "the translation is not kept")

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        with sqlite_db.transaction(self._conn()) as conn:
            conn.execute(sql, params)

    def journal_mode(self) -> str:
        return self._conn().execute("PRAGMA journal_mode").fetchone()[0]

    def applied_migrations(self) -> list[int]:
        return [row[0] for row in self._conn().execute("SELECT id FROM migrations ORDER BY id")]

    def close(self) -> None:
        """Close every thread's connection (call once nothing uses the memory any more)."""
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    # -- translations ---------------------------------------------------------------------

    def get(self, key: str) -> Translation | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, Translation]:
        """The stored translations of these keys (a missing one is absent), a query per
        ``QUERY_KEYS`` keys: a file's lines are looked up at once, not one query each."""
        found: dict[str, Translation] = {}
        for chunk in _chunks(list(dict.fromkeys(keys))):
            for key, source, text, problem in self._read(
                    f"SELECT key, source, text, problem FROM translations WHERE key IN ({_marks(chunk)})", chunk):
                found[key] = Translation(source=source, text=text, problem=problem, origin="memory")
        return found

    def _read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """Rows of a query; none when the read fails (a cache miss, logged once)."""
        try:
            return self._conn().execute(sql, tuple(params)).fetchall()
        except sqlite3.DatabaseError as exc:
            self._failed("read", exc)
            return []

    def put(self, key: str, *, source: str, text: str, problem: str | None, identity: str) -> None:
        try:
            self._write("INSERT OR REPLACE INTO translations (key, source, text, problem, identity, created) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (key, source, text, problem, identity, _now()))
        except sqlite3.DatabaseError as exc:  # full disk, bad page: the translation itself is fine
            self._failed("write", exc)

    def accepted(self) -> list[tuple[str, str]]:
        """Model outputs that passed the checks, oldest first (training-data export)."""
        return [(r[0], r[1]) for r in self._conn().execute(
            "SELECT source, text FROM translations WHERE problem IS NULL ORDER BY created, rowid")]

    # -- corrections ---------------------------------------------------------------------

    def record_correction(self, source: str, target: str, context_key: str = "") -> None:
        """Store a human correction; a later correction of the same source + context replaces it."""
        self._write("INSERT OR REPLACE INTO corrections (source, context_key, target, created) "
                    "VALUES (?, ?, ?, ?)", (normalize(source), context_key, target, _now()))

    def correction_for(self, source: str, context_key: str = "") -> str | None:
        return self.corrections_for([(source, context_key)]).get((source, context_key))

    def corrections_for(self, wanted: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The corrections of these (source, context key) pairs, by pair (a missing one is absent)."""
        by_normal: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for source, ctx in wanted:
            by_normal.setdefault((normalize(source), ctx), []).append((source, ctx))
        found: dict[tuple[str, str], str] = {}
        for chunk in _chunks(list(dict.fromkeys(source for source, _ in by_normal))):
            for source, ctx, target in self._read(
                    f"SELECT source, context_key, target FROM corrections WHERE source IN ({_marks(chunk)})", chunk):
                for pair in by_normal.get((source, ctx), ()):
                    found[pair] = target
        return found

    def corrections(self) -> list[tuple[str, str]]:
        """Every correction as (normalised source, target), oldest first (training-data export)."""
        return [(r[0], r[1]) for r in self._conn().execute(
            "SELECT source, target FROM corrections ORDER BY created, rowid")]

    def stats(self) -> dict[str, int]:
        conn = self._conn()
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "translations": one("SELECT COUNT(*) FROM translations"),
            "flagged": one("SELECT COUNT(*) FROM translations WHERE problem IS NOT NULL"),
            "corrections": one("SELECT COUNT(*) FROM corrections"),
        }
