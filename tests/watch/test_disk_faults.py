"""Real disk faults (issue 11 items 5, 7, 9): a full or read-only outbox, a full state disk and an
input the daemon can read but not remove, on small tmpfs and read-only bind mounts.

Mounting needs root (CI containers run the tests as root); elsewhere these tests skip and say so.
Acceptance: every dropped file ends translated exactly once or in failed/ with a reason, and
what the daemon reports (queue counts, the worker's problem) matches what happens.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from poll import poll_until

from asmr_daemon.service.daemon import Daemon

from .conftest import make_settings
from .test_daemon import outputs


def _mount(*args: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs or a read-only bind mount (simulated disk faults)")
    if shutil.which("mount") is None:
        pytest.skip("needs the mount command (simulated disk faults)")
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({' '.join(args)}): {done.stderr.strip()}")


@pytest.fixture
def mounts():
    """``mount(*args, at=path)``; everything is unmounted after the test, innermost first."""
    made: list[Path] = []

    def mount(*args: str, at: Path) -> Path:
        at.mkdir(parents=True, exist_ok=True)
        _mount(*args, str(at))
        made.append(at)
        return at

    yield mount
    for path in reversed(made):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path) -> Path:
    """Write a filler file until the filesystem is full; returns it (delete it to free space)."""
    filler = folder / ".filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
                os.fsync(handle.fileno())
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def start(folders, fake, **watch) -> Daemon:
    daemon = Daemon(make_settings(folders, **watch), fake, retry_seconds=(0.1, 0.4))
    daemon.start()
    return daemon


def drop(inbox: Path, count: int) -> dict[str, str]:
    inbox.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (inbox / f"s{i}.txt").write_text(f"script {i}\n")
    return {f"s{i}.zh.txt": f"SCRIPT {i}\n" for i in range(count)}


def test_a_full_outbox_keeps_files_queued_until_space_returns(mounts, folders, fake):
    outbox = mounts("-t", "tmpfs", "-o", "size=256k", "tmpfs", at=folders["outbox"])
    filler = fill(outbox)
    expected = drop(folders["inbox"], 3)
    daemon = start(folders, fake)
    try:
        poll_until(lambda: "no space left on device" in (daemon.worker.problem or ""), what="the disk-full problem")
        time.sleep(1.0)  # several retries: nothing may go to failed/ meanwhile
        counts = daemon.store.counts()
        assert counts["failed"] == 0 and counts["done"] == 0 and counts["queued"] + counts["running"] == 3
        daemon._write_status()
        record = daemon.status.read(daemon.status.path)
        assert "no space left on device" in record["worker"]["problem"] and record["worker"]["alive"]
        filler.unlink()
        poll_until(lambda: daemon.idle() and outputs(outbox) == expected, what="all outputs after space returned")
        assert daemon.store.counts() == {"queued": 0, "running": 0, "done": 3, "failed": 0}
        assert daemon.worker.problem is None
        assert not (folders["inbox"] / "failed").exists()
    finally:
        daemon.shutdown()


def test_a_read_only_outbox_keeps_files_queued_until_it_is_writable(mounts, folders, fake):
    outbox = mounts("-t", "tmpfs", "-o", "size=1m", "tmpfs", at=folders["outbox"])
    _mount("-o", "remount,ro", str(outbox))
    expected = drop(folders["inbox"], 2)
    daemon = start(folders, fake)
    try:
        poll_until(lambda: "read-only file system" in (daemon.worker.problem or ""), what="the read-only problem")
        assert daemon.store.counts()["failed"] == 0
        _mount("-o", "remount,rw", str(outbox))
        poll_until(lambda: daemon.idle() and outputs(outbox) == expected, what="outputs once writable")
        assert daemon.store.counts() == {"queued": 0, "running": 0, "done": 2, "failed": 0}
    finally:
        daemon.shutdown()


def test_a_full_state_disk_loses_no_file(mounts, folders, fake):
    state = mounts("-t", "tmpfs", "-o", "size=2m", "tmpfs", at=folders["state"])
    daemon = start(folders, fake, stable_seconds=0.2)
    try:
        filler = fill(state)
        expected = drop(folders["inbox"], 5)

        def accounted() -> bool:  # every file is waiting to be queued, queued, or done
            counts = daemon.store.counts()
            waiting = daemon.watcher.unqueued_status()["count"]
            return waiting + counts["queued"] + counts["running"] + counts["done"] == 5 and waiting > 0

        poll_until(accounted, what="the files to wait for the state disk")
        filler.unlink()
        poll_until(lambda: daemon.idle() and outputs(folders["outbox"]) == expected, what="all outputs")
        assert daemon.store.counts() == {"queued": 0, "running": 0, "done": 5, "failed": 0}
        assert daemon.watcher.unqueued_status()["count"] == 0
        assert Counter(p.name for p in fake.calls) == {f"s{i}.txt": 1 for i in range(5)}
    finally:
        daemon.shutdown()


def test_an_input_that_cannot_be_removed_is_translated_once_and_reported_once(mounts, folders, fake):
    """The audit: a file the daemon can read but not remove was copied into done/ and failed/
    again on every rescan. A read-only bind mount inside the inbox makes such files."""
    inbox = folders["inbox"]
    locked = inbox / "locked"
    locked.mkdir(parents=True)
    (locked / "a.txt").write_text("readable\n")
    (locked / "empty.txt").write_text("")
    mounts("--bind", str(locked), at=locked)
    _mount("-o", "remount,bind,ro", str(locked))
    daemon = start(folders, fake, rescan_seconds=0.3)
    try:
        poll_until(lambda: daemon.idle() and daemon.store.counts()["done"] == 1
                 and daemon.store.counts()["failed"] == 1, what="one done, one failed")
        time.sleep(2.0)  # a few rescans: nothing is queued, copied or reported again
        assert daemon.store.counts() == {"queued": 0, "running": 0, "done": 1, "failed": 1}
        assert outputs(folders["outbox"]) == {"locked/a.zh.txt": "READABLE\n"}
        assert Counter(p.name for p in fake.calls) == {"a.txt": 1, "empty.txt": 1}
        assert not (inbox / "done" / "locked" / "a.txt").exists()  # never a second copy
        assert sorted(p.name for p in (inbox / "failed" / "locked").iterdir()) == ["empty.txt.error.txt"]
        report = (inbox / "failed" / "locked" / "empty.txt.error.txt").read_text()
        assert "Error code:    empty" in report and "cannot be moved out of the inbox" in report
        assert sorted(p.name for p in locked.iterdir()) == ["a.txt", "empty.txt"]
        [done] = [j for j in daemon.store.jobs() if j.state.value == "done"]
        assert "cannot be moved out of the inbox" in (done.error_detail or "")
    finally:
        daemon.shutdown()
