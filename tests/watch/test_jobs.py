"""The durable queue and the job runner: transitions, crash recovery, no clobbering."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from asmr_daemon.errors import InputCode
from asmr_daemon.watch.jobs import JobCode, JobState, JobStore, read_only_counts
from asmr_daemon.watch.outputs import unique_destination
from asmr_daemon.watch.runner import JobRunner
from asmr_daemon.watch.workspace import hash_or_none as sha256_file


def test_state_transitions_and_counts(store):
    a = store.enqueue("a.txt")
    assert store.enqueue("a.txt") == a  # same active file: same job
    b = store.enqueue("sub/b.txt")
    job = store.claim()
    assert job.id == a and job.state is JobState.RUNNING and job.attempts == 1
    assert store.enqueue("a.txt") == a  # still active while running
    store.record_input(a, "h1", "a.zh.txt")
    store.record_output(a, "o1")
    store.record_move(a, Path("/done/a.txt"))
    store.finish(a)
    assert store.get(a).state is JobState.DONE
    assert store.enqueue("a.txt") != a  # dropped again: a new job
    job = store.claim()
    assert job.id == b
    store.fail(b, InputCode.EMPTY, "b.txt is empty")
    assert store.counts() == {"queued": 1, "running": 0, "done": 1, "failed": 1}
    [failure] = store.recent_failures()
    assert failure.error_code == "empty" and failure.error_detail == "b.txt is empty"
    counts, failures = read_only_counts(store.path)
    assert counts["failed"] == 1 and failures[0].source == "sub/b.txt"


def test_migrations_are_numbered_and_run_once(tmp_path):
    path = tmp_path / "jobs.sqlite"
    JobStore(path).close()
    JobStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT id FROM migrations").fetchall() == [(1,), (2,)]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_queue_from_before_the_shared_migrations_table_opens_and_keeps_its_jobs(tmp_path):
    """jobs.sqlite written by the first release: ``migrations (id, applied REAL)``, one migration."""
    from asmr_daemon.watch.jobs import MIGRATIONS

    path = tmp_path / "jobs.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE migrations (id INTEGER PRIMARY KEY, applied REAL NOT NULL)")
    db.executescript(MIGRATIONS[0][1])
    db.execute("INSERT INTO migrations VALUES (1, 1700000000.0)")
    db.execute("INSERT INTO jobs (source, state, created, updated) VALUES ('old.txt', 'queued', 1, 1)")
    db.commit()
    db.close()
    store = JobStore(path)
    [job] = store.jobs()
    assert job.source == "old.txt" and job.state is JobState.QUEUED and job.raw_source is None
    store.close()
    rows = sqlite3.connect(path).execute("SELECT id, name, applied FROM migrations ORDER BY id").fetchall()
    assert rows[0] == (1, "create jobs", "2023-11-14T22:13:20+00:00")
    assert [r[0] for r in rows] == [1, 2]


def test_new_content_invalidates_a_recorded_output(store):
    a = store.enqueue("a.txt")
    store.claim()
    store.record_input(a, "h1", "a.zh.txt")
    store.record_output(a, "o1")
    store.record_input(a, "h1", "a.zh.txt")
    assert store.get(a).output_sha256 == "o1"
    store.record_input(a, "h2", "a.zh.txt")
    assert store.get(a).output_sha256 is None


def test_recover_requeues_running_jobs_and_gives_up_after_max_attempts(store):
    a, b = store.enqueue("a.txt"), store.enqueue("b.txt")
    for _ in range(3):
        store.claim(a)
        store.recover(max_attempts=3)
    assert store.get(a).state is JobState.FAILED and store.get(a).error_code == JobCode.CRASHED
    store.claim(b)
    assert store.recover(max_attempts=3) == (1, 0)
    assert store.get(b).state is JobState.QUEUED and store.get(b).attempts == 1


def test_unique_destination_never_clobbers(tmp_path):
    (tmp_path / "a.txt").write_text("1")
    (tmp_path / "a (1).txt").write_text("2")
    assert unique_destination(tmp_path / "a.txt") == tmp_path / "a (2).txt"
    assert unique_destination(tmp_path / "b.txt") == tmp_path / "b.txt"
    (tmp_path / "c.txt.error.txt").write_text("old report")
    assert unique_destination(tmp_path / "c.txt", also_free=(".error.txt",)) == tmp_path / "c (1).txt"


def run_one(store, dirs, translate) -> JobState:
    runner = JobRunner(store, dirs, translate)
    job = store.claim()
    return runner.process(job)


def test_runner_happy_path_and_same_name_twice(Fake, store, dirs):
    fake = Fake()
    for round_ in range(2):
        (dirs.inbox / "sub").mkdir(exist_ok=True)
        (dirs.inbox / "sub" / "a.txt").write_text(f"hello {round_}")
        store.enqueue("sub/a.txt")
        assert run_one(store, dirs, fake) is JobState.DONE
        assert (dirs.outbox / "sub" / "a.zh.txt").read_text() == f"HELLO {round_}"
    assert (dirs.done / "sub" / "a.txt").read_text() == "hello 0"
    assert (dirs.done / "sub" / "a (1).txt").read_text() == "hello 1"  # never overwritten
    assert not (dirs.inbox / "sub" / "a.txt").exists()
    # No staging leftovers: only the record of what was written (output_files).
    assert [p.name for p in dirs.outbox.rglob(".*")] == [".a.zh.txt.asmr.json"]


def test_runner_bad_file_goes_to_failed_with_report(Fake, store, dirs):
    (dirs.inbox / "empty.txt").write_text("")
    (dirs.failed).mkdir(parents=True)
    (dirs.failed / "empty.txt.error.txt").write_text("an older report")
    job_id = store.enqueue("empty.txt")
    assert run_one(store, dirs, Fake()) is JobState.FAILED
    moved = dirs.failed / "empty (1).txt"
    assert moved.exists()
    report = (dirs.failed / "empty (1).txt.error.txt").read_text()
    assert "What is wrong: empty.txt is empty" in report and "Error code:    empty" in report
    assert "What to do:" in report
    assert store.get(job_id).error_code == "empty"
    assert not list(dirs.outbox.rglob("*"))


def test_crash_after_output_before_bookkeeping_does_not_translate_again(Fake, store, dirs):
    """Simulate kill -9 right after the output was renamed into place: the restart only finishes
    the bookkeeping (the translator is not called again)."""
    (dirs.inbox / "a.txt").write_text("abc")
    job_id = store.enqueue("a.txt")

    class Crash(BaseException):
        pass

    def crashing_move(*args, **kwargs):
        raise Crash()

    runner = JobRunner(store, dirs, Fake())
    runner.mover.move = crashing_move  # the process "dies" just before moving the input
    with pytest.raises(Crash):
        runner.process(store.claim())
    assert (dirs.outbox / "a.zh.txt").read_text() == "ABC"
    assert store.recover(max_attempts=3) == (1, 0)
    second = Fake()
    assert run_one(store, dirs, second) is JobState.DONE
    assert second.calls == []
    assert (dirs.done / "a.txt").exists() and store.get(job_id).state is JobState.DONE


def test_crash_after_staging_renames_the_staged_output(Fake, store, dirs):
    (dirs.inbox / "a.txt").write_text("abc")
    store.enqueue("a.txt")
    job = store.claim()
    # What step 2 leaves behind when the process dies before the rename:
    digest = sha256_file(dirs.inbox / "a.txt")
    store.record_input(job.id, digest, "a.zh.txt")
    staged = dirs.outbox / f".asmr-job{job.id}.partial"
    staged.write_text("ABC")
    store.record_output(job.id, sha256_file(staged))
    store.recover(max_attempts=3)
    second = Fake()
    assert run_one(store, dirs, second) is JobState.DONE
    assert second.calls == [] and not staged.exists()
    assert (dirs.outbox / "a.zh.txt").read_text() == "ABC"


def test_crash_after_input_moved_finishes_bookkeeping(Fake, store, dirs):
    (dirs.inbox / "a.txt").write_text("abc")
    store.enqueue("a.txt")
    job = store.claim()
    runner = JobRunner(store, dirs, Fake())
    original = runner.mover.move

    class Crash(BaseException):
        pass

    def move_then_die(*args, **kwargs):
        original(*args, **kwargs)
        raise Crash()

    runner.mover.move = move_then_die
    with pytest.raises(Crash):
        runner.process(job)
    store.recover(max_attempts=3)
    second = Fake()
    assert run_one(store, dirs, second) is JobState.DONE
    assert second.calls == []
    assert sorted(p.name for p in dirs.done.iterdir()) == ["a.txt"]


def test_replaced_content_after_crash_is_translated_again(Fake, store, dirs):
    (dirs.inbox / "a.txt").write_text("old")
    store.enqueue("a.txt")
    runner = JobRunner(store, dirs, Fake())

    class Crash(BaseException):
        pass

    def crashing_move(*args, **kwargs):
        raise Crash()

    runner.mover.move = crashing_move
    with pytest.raises(Crash):
        runner.process(store.claim())
    (dirs.inbox / "a.txt").write_text("new")
    store.recover(max_attempts=3)
    assert run_one(store, dirs, Fake()) is JobState.DONE
    assert (dirs.outbox / "a.zh.txt").read_text() == "NEW"


def test_unexpected_error_is_retried_then_failed(store, dirs):
    (dirs.inbox / "a.txt").write_text("abc")
    store.enqueue("a.txt")
    calls = []

    def broken(src, dest):
        calls.append(src)
        raise RuntimeError("CUDA out of memory")

    runner = JobRunner(store, dirs, broken, max_attempts=2)
    assert runner.process(store.claim()) is JobState.QUEUED
    assert runner.process(store.claim()) is JobState.FAILED
    assert len(calls) == 2
    report = (dirs.failed / "a.txt.error.txt").read_text()
    assert "CUDA out of memory" in report and "internal" in report
    assert not [p for p in dirs.outbox.rglob("*")]


def test_gone_file_fails_quietly(Fake, store, dirs):
    job_id = store.enqueue("vanished.txt")
    assert run_one(store, dirs, Fake()) is JobState.FAILED
    assert store.get(job_id).error_code == JobCode.GONE
    assert not dirs.failed.exists()


def test_symlink_outside_goes_to_failed_as_a_link(Fake, store, dirs, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    (dirs.inbox / "link.txt").symlink_to(secret)
    store.enqueue("link.txt")
    fake = Fake()
    assert run_one(store, dirs, fake) is JobState.FAILED
    assert fake.calls == []
    moved = dirs.failed / "link.txt"
    assert moved.is_symlink() and secret.read_text() == "private"
    assert "outside-inbox" in (dirs.failed / "link.txt.error.txt").read_text()
