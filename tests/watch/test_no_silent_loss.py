"""Faults of issue 11 (items 5, 6, 11) against the in-process daemon: every dropped file ends
translated exactly once or in failed/ with a reason, and the status record says what happens."""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

from poll import poll_until

from asmr_daemon.commands.status import worker_rows
from asmr_daemon.service.daemon import Daemon
from asmr_daemon.watch.jobs import JobStore

from .conftest import make_settings
from .test_daemon import outputs


def test_an_undecodable_name_does_not_strand_the_rest_of_the_pass(start_daemon, folders, fake):
    inbox = folders["inbox"]
    inbox.mkdir(parents=True)
    for i in range(10):
        (inbox / f"f{i}.txt").write_text(f"file {i}\n")
    bad = os.fsencode(inbox) + b"/caf\xe9.txt"
    with open(bad, "wb") as handle:
        handle.write(b"bonjour\n")
    daemon = start_daemon()
    poll_until(lambda: daemon.idle() and daemon.store.counts()["failed"] == 1, what="all files handled")
    assert outputs(folders["outbox"]) == {f"f{i}.zh.txt": f"FILE {i}\n" for i in range(10)}
    assert daemon.store.counts() == {"queued": 0, "running": 0, "done": 10, "failed": 1}
    [job] = daemon.store.recent_failures()
    assert job.source == "caf\\xe9.txt" and job.error_code == "bad-name"
    assert os.path.exists(os.fsencode(inbox) + b"/failed/caf\xe9.txt.error.txt")


def test_fifos_and_dangling_symlinks_are_reported_once(start_daemon, folders, tmp_path):
    inbox = folders["inbox"]
    inbox.mkdir(parents=True)
    os.mkfifo(inbox / "pipe.txt")
    (inbox / "dangling.txt").symlink_to(tmp_path / "nowhere.txt")
    daemon = start_daemon(rescan_seconds=0.3)
    failed = inbox / "failed"
    poll_until(lambda: daemon.idle() and daemon.store.counts()["failed"] == 2, what="two failures")
    time.sleep(1.5)  # several rescans: nothing is reported again
    assert daemon.store.counts()["failed"] == 2
    assert sorted(p.name for p in failed.iterdir()) == [
        "dangling.txt", "dangling.txt.error.txt", "pipe.txt", "pipe.txt.error.txt"]
    assert "Error code:    not-regular" in (failed / "pipe.txt.error.txt").read_text()


def test_disk_full_while_requeueing_does_not_kill_the_worker(folders, fake, monkeypatch):
    """The audit's worker death: SQLite 'disk full' while putting a job back."""
    inbox = folders["inbox"]
    inbox.mkdir(parents=True)
    (inbox / "a.txt").write_text("hello\n")
    outbox_full = [True]

    def translate(src: Path, dest: Path) -> None:
        if outbox_full[0]:
            outbox_full[0] = False
            raise OSError(errno.ENOSPC, "No space left on device", str(dest))
        fake(src, dest)

    real_requeue = JobStore.requeue
    failures = [2]

    def requeue(self, *args, **kwargs):
        if failures[0]:
            failures[0] -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return real_requeue(self, *args, **kwargs)

    monkeypatch.setattr(JobStore, "requeue", requeue)
    daemon = Daemon(make_settings(folders), translate, retry_seconds=(0.05, 0.2))
    daemon.start()
    try:
        poll_until(lambda: daemon.idle() and (folders["outbox"] / "a.zh.txt").exists(), what="the output")
        assert daemon.store.counts() == {"queued": 0, "running": 0, "done": 1, "failed": 0}
        assert daemon.worker.alive() and daemon.worker.problem is None
        assert Counter(p.name for p in fake.calls) == {"a.txt": 1}
    finally:
        daemon.shutdown()


def test_a_worker_that_cannot_go_on_makes_the_daemon_exit_non_zero(folders, fake, monkeypatch):
    def broken_claim(self, job_id=None):
        raise RuntimeError("queue logic broken")

    daemon = Daemon(make_settings(folders), fake, retry_seconds=(0.01, 0.02))
    monkeypatch.setattr(JobStore, "claim", broken_claim)
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(daemon.run()))
    runner.start()
    runner.join(timeout=60)
    assert result == [1]
    assert daemon.worker.fatal is not None and not daemon.worker.alive()
    assert not daemon.healthy()
    record = daemon.status.read(daemon.status.path)
    assert record["phase"] == "stopped" and record["worker"]["alive"] is False
    assert dict(worker_rows(record))["job worker"].startswith("[red]stopped")


def test_status_tells_a_live_process_with_a_stuck_worker_apart():
    now = 1000.0
    waiting = {"worker": {"alive": True, "problem": "no space left on device (/out/a.zh.txt)", "beat": now}}
    assert worker_rows(waiting, now) == [
        ("job worker", "[yellow]waiting: no space left on device (/out/a.zh.txt) (retrying)[/]")]
    dead = {"worker": {"alive": False, "problem": None, "beat": now - 95}}
    assert worker_rows(dead, now) == [
        ("job worker", "[red]stopped (last beat 95 s ago): files are not translated[/]")]


def test_files_wait_while_the_queue_cannot_be_written_then_all_are_queued(folders, fake, monkeypatch):
    inbox = folders["inbox"]
    inbox.mkdir(parents=True)
    real_enqueue = JobStore.enqueue
    full = threading.Event()
    full.set()

    def enqueue(self, *args, **kwargs):
        if full.is_set():
            raise sqlite3.OperationalError("database or disk is full")
        return real_enqueue(self, *args, **kwargs)

    monkeypatch.setattr(JobStore, "enqueue", enqueue)
    daemon = Daemon(make_settings(folders, stable_seconds=0.2), fake)
    daemon.start()
    try:
        for i in range(5):
            (inbox / f"s{i}.txt").write_text(f"s {i}\n")
        poll_until(lambda: daemon.watcher.unqueued_status()["count"] == 5, what="five waiting files")
        daemon._write_status()
        record = daemon.status.read(daemon.status.path)
        assert record["unqueued"] == {"count": 5, "problem": "OperationalError: database or disk is full"}
        rows = dict(worker_rows(record))
        assert rows["not queued yet"] == ("[yellow]5 file(s): OperationalError: database or disk is full "
                                          "(retrying)[/]")
        assert rows["job worker"] == "[green]alive[/]"
        full.clear()
        poll_until(lambda: daemon.idle() and len(outputs(folders["outbox"])) == 5, what="five outputs")
        assert daemon.store.counts()["done"] == 5 and daemon.watcher.unqueued_status()["count"] == 0
    finally:
        daemon.shutdown()
