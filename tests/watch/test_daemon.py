"""Watcher + queue + daemon in-process with a fake translator and the real observer.

These use real time (the observer is real), but never sleep to wait for a result: they poll for
the expected end state with a generous deadline, so a slow machine only makes them slower.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from poll import poll_until

from asmr_daemon.watch.jobs import JobState


def outputs(outbox: Path) -> dict[str, str]:
    return {p.relative_to(outbox).as_posix(): p.read_text() for p in outbox.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


@pytest.mark.parametrize("observer", ["auto", "polling"])
def test_each_way_of_arriving_gives_one_output(start_daemon, folders, fake, tmp_path, observer):
    inbox, outbox = folders["inbox"], folders["outbox"]
    inbox.mkdir(parents=True)
    (inbox / "before.txt").write_text("was there before the start\n")  # start-up scan
    daemon = start_daemon(stable_seconds=0.5, observer=observer)

    # 1. written slowly, in chunks, in place
    def slow_writer():
        with open(inbox / "slow.txt", "w") as handle:
            for i in range(8):
                handle.write(f"line {i}\n")
                handle.flush()
                time.sleep(0.05)

    writer = threading.Thread(target=slow_writer)
    writer.start()
    # 2. renamed into the inbox from the same filesystem
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "renamed.txt").write_text("renamed in\n")
    os.rename(staging / "renamed.txt", inbox / "renamed.txt")
    # 3. copied from another folder
    (staging / "copied.txt").write_text("copied in\n")
    shutil.copy(staging / "copied.txt", inbox / "copied.txt")
    # 4. in a subfolder
    (inbox / "work" / "drama").mkdir(parents=True)
    (inbox / "work" / "drama" / "track.txt").write_text("in a subfolder\n")
    writer.join()

    expected = {
        "before.zh.txt": "WAS THERE BEFORE THE START\n",
        "slow.zh.txt": "".join(f"LINE {i}\n" for i in range(8)),
        "renamed.zh.txt": "RENAMED IN\n",
        "copied.zh.txt": "COPIED IN\n",
        "work/drama/track.zh.txt": "IN A SUBFOLDER\n",
    }
    poll_until(lambda: len(outputs(outbox)) == len(expected) and daemon.idle(), what="all outputs")
    assert outputs(outbox) == expected
    assert Counter(p.name for p in fake.calls) == Counter(
        {name: 1 for name in ("before.txt", "slow.txt", "renamed.txt", "copied.txt", "track.txt")})
    done = inbox / "done"
    assert sorted(p.relative_to(done).as_posix() for p in done.rglob("*") if p.is_file()) == [
        "before.txt", "copied.txt", "renamed.txt", "slow.txt", "work/drama/track.txt"]
    assert daemon.store.counts() == {"queued": 0, "running": 0, "done": 5, "failed": 0}


def test_two_hundred_files_at_once(start_daemon, folders, tmp_path):
    inbox, outbox = folders["inbox"], folders["outbox"]
    daemon = start_daemon(stable_seconds=0.3)
    staging = tmp_path / "many"
    staging.mkdir()
    for i in range(200):
        (staging / f"s{i:03}.txt").write_text(f"script {i}\n")
    for path in sorted(staging.iterdir()):
        os.rename(path, inbox / path.name)
    poll_until(lambda: daemon.idle() and len(outputs(outbox)) == 200, timeout=120, what="200 outputs")
    got = outputs(outbox)
    assert got == {f"s{i:03}.zh.txt": f"SCRIPT {i}\n" for i in range(200)}
    assert len(list((inbox / "done").iterdir())) == 200
    assert [p.name for p in inbox.iterdir() if p.name != ".asmr-daemon.lock"] == ["done"]
    assert daemon.store.counts()["done"] == 200


def test_bad_inputs_and_outside_symlinks_go_to_failed(start_daemon, folders, tmp_path):
    inbox, outbox = folders["inbox"], folders["outbox"]
    daemon = start_daemon()
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours\n")
    (inbox / "empty.txt").write_text("")
    (inbox / "binary.txt").write_bytes(b"\x00\x01\x02abc")
    (inbox / "link.txt").symlink_to(secret)
    (inbox / "good.txt").write_text("fine\n")
    (inbox / ".hidden.txt").write_text("ignored\n")
    (inbox / "download.txt.part").write_text("ignored\n")
    failed = inbox / "failed"
    poll_until(lambda: daemon.idle() and len(list(failed.glob("*.error.txt"))) == 3, what="3 failures")
    reports = {p.name: p.read_text() for p in failed.glob("*.error.txt")}
    assert "Error code:    empty" in reports["empty.txt.error.txt"]
    assert "Error code:    binary" in reports["binary.txt.error.txt"]
    assert "Error code:    outside-inbox" in reports["link.txt.error.txt"]
    assert (failed / "link.txt").is_symlink()
    assert outputs(outbox) == {"good.zh.txt": "FINE\n"}
    # Ignored files are left alone.
    assert (inbox / ".hidden.txt").exists() and (inbox / "download.txt.part").exists()
    codes = sorted(j.error_code for j in daemon.store.jobs(JobState.FAILED))
    assert codes == ["binary", "empty", "outside-inbox"]


def test_a_file_that_keeps_growing_fails_as_unstable(start_daemon, folders):
    inbox = folders["inbox"]
    daemon = start_daemon(stable_seconds=0.5, max_wait_seconds=1.5)
    stop = threading.Event()

    def grow():
        # An open handle keeps writing into the file even after the daemon moved it to failed/.
        with open(inbox / "growing.txt", "w") as handle:
            while not stop.is_set():
                handle.write("more\n")
                handle.flush()
                time.sleep(0.05)

    writer = threading.Thread(target=grow)
    writer.start()
    try:
        report = inbox / "failed" / "growing.txt.error.txt"
        poll_until(report.exists, what="the unstable report")
    finally:
        stop.set()
        writer.join()
    text = report.read_text()
    assert "kept changing for" in text and "Error code:    unstable" in text
    assert not list(folders["outbox"].rglob("*.txt"))
    poll_until(daemon.idle, what="idle")
    [job] = daemon.store.jobs(JobState.FAILED)
    assert job.error_code == "unstable"


def test_restart_resumes_the_queue_and_a_second_daemon_is_refused(folders, fake, settings):
    from asmr_daemon.errors import ConfigError
    from asmr_daemon.service.daemon import Daemon
    from asmr_daemon.watch.jobs import JobStore

    inbox = folders["inbox"]
    inbox.mkdir(parents=True)
    (inbox / "queued.txt").write_text("left in the queue\n")
    # A queue left behind by a daemon that died with a job running:
    store = JobStore(folders["state"] / "jobs.sqlite")
    store.enqueue("queued.txt")
    store.claim()
    store.close()
    daemon = Daemon(settings, fake)
    daemon.start()
    try:
        with pytest.raises(ConfigError, match="already uses the state dir"):
            Daemon(settings, fake).start()
        poll_until(lambda: daemon.idle() and (folders["outbox"] / "queued.zh.txt").exists(), what="resumed job")
        assert len(fake.calls) == 1
        assert daemon.store.counts()["done"] == 1
    finally:
        daemon.shutdown()


# -- outputs the user corrected are never replaced (output_files) ----------------------------

def test_a_corrected_output_survives_dropping_the_script_again(start_daemon, folders, caplog) -> None:
    inbox, outbox = folders["inbox"], folders["outbox"]
    inbox.mkdir(parents=True)
    start_daemon()
    (inbox / "a.txt").write_text("first\n")
    poll_until(lambda: (outbox / "a.zh.txt").exists() and not (inbox / "a.txt").exists(), what="the first output")
    (outbox / "a.zh.txt").write_text("MY CORRECTED TRANSLATION\n")  # the user fixes a line

    with caplog.at_level(logging.WARNING, logger="asmr_daemon"):
        (inbox / "a.txt").write_text("second\n")
        poll_until(lambda: (outbox / "a.zh (1).txt").exists() and not (inbox / "a.txt").exists(),
                 what="the second output beside the first")
    assert (outbox / "a.zh.txt").read_text() == "MY CORRECTED TRANSLATION\n"
    assert (outbox / "a.zh (1).txt").read_text() == "SECOND\n"
    assert f"output written as {outbox / 'a.zh (1).txt'}: {outbox / 'a.zh.txt'} was changed since asmr-daemon " \
           "wrote it; your version is kept" in caplog.text

    # Dropped once more: our own unchanged copy is replaced, nothing piles up.
    (inbox / "a.txt").write_text("third\n")
    poll_until(lambda: (outbox / "a.zh (1).txt").read_text() == "THIRD\n", what="the third output")
    assert (outbox / "a.zh.txt").read_text() == "MY CORRECTED TRANSLATION\n"
    assert sorted(p.name for p in outbox.iterdir() if not p.name.startswith(".")) == ["a.zh (1).txt", "a.zh.txt"]


def test_an_untouched_output_is_replaced_when_the_script_comes_again(start_daemon, folders) -> None:
    inbox, outbox = folders["inbox"], folders["outbox"]
    inbox.mkdir(parents=True)
    start_daemon()
    (inbox / "a.txt").write_text("first\n")
    poll_until(lambda: (outbox / "a.zh.txt").exists() and not (inbox / "a.txt").exists(), what="the first output")
    (inbox / "a.txt").write_text("second\n")
    poll_until(lambda: (outbox / "a.zh.txt").read_text() == "SECOND\n", what="the replaced output")
    assert not (outbox / "a.zh (1).txt").exists()
