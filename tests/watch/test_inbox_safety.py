"""The inbox as hostile ground (issue 11, Critical 2 and item 3): folders swapped for symlinks,
files swapped during a job, links inside and outside, names the filesystem barely allows."""

from __future__ import annotations

import os
from pathlib import Path

from asmr_daemon.watch.jobs import JobCode, JobState
from asmr_daemon.watch.runner import JobRunner


def files(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir() or p.is_symlink())


def test_a_folder_swapped_for_a_symlink_moves_nothing_out(Fake, store, dirs, tmp_path):
    """The audit's attack: ``inbox/a/notes.txt`` queued, then ``inbox/a`` replaced by a symlink to
    the victim's private folder. Nothing is read or moved; the job fails as outside-inbox."""
    (dirs.inbox / "a").mkdir()
    (dirs.inbox / "a" / "notes.txt").write_text("the user's own notes\n")
    job_id = store.enqueue("a/notes.txt")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "notes.txt").write_text("secret\n")
    os.rename(dirs.inbox / "a", tmp_path / "moved-away")
    (dirs.inbox / "a").symlink_to(private)

    fake = Fake()
    assert JobRunner(store, dirs, fake).process(store.claim()) is JobState.FAILED
    assert fake.calls == []
    assert (private / "notes.txt").read_text() == "secret\n" and files(private) == ["notes.txt"]
    assert files(dirs.outbox) == [] and files(dirs.done) == []
    job = store.get(job_id)
    assert job.error_code == JobCode.OUTSIDE_INBOX == "outside-inbox"
    report = (dirs.failed / "a" / "notes.txt.error.txt").read_text()
    assert "Error code:    outside-inbox" in report and "no longer inside the inbox" in report
    assert files(dirs.failed) == ["a/notes.txt.error.txt"]


def test_a_file_swapped_during_the_job_the_checked_file_is_read_and_the_newcomer_stays(Fake, store, dirs,
                                                                                       tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("secret\n")
    (dirs.inbox / "a.txt").write_text("dropped\n")
    store.enqueue("a.txt")
    fake = Fake()

    def swapping(src: Path, dest: Path) -> None:
        os.unlink(dirs.inbox / "a.txt")
        (dirs.inbox / "a.txt").symlink_to(secret)  # swapped after the check, before the read
        fake(src, dest)

    assert JobRunner(store, dirs, swapping).process(store.claim()) is JobState.DONE
    assert (dirs.outbox / "a.zh.txt").read_text() == "DROPPED\n"
    # The symlink that replaced the file is not moved as if it were the translated input.
    assert (dirs.inbox / "a.txt").is_symlink() and secret.read_text() == "secret\n"
    assert files(dirs.done) == []


def test_a_symlink_inside_the_inbox_is_translated_and_the_link_moved(Fake, store, dirs):
    (dirs.inbox / "sub").mkdir()
    (dirs.inbox / "sub" / "real.txt").write_text("real\n")
    (dirs.inbox / "alias.txt").symlink_to("sub/real.txt")
    store.enqueue("alias.txt")
    assert JobRunner(store, dirs, Fake()).process(store.claim()) is JobState.DONE
    assert (dirs.outbox / "alias.zh.txt").read_text() == "REAL\n"
    assert (dirs.done / "alias.txt").is_symlink() and (dirs.inbox / "sub" / "real.txt").exists()


def test_a_symlink_escaping_with_dotdot_is_refused(Fake, store, dirs, tmp_path):
    (tmp_path / "secret.txt").write_text("secret\n")
    (dirs.inbox / "sub").mkdir()
    (dirs.inbox / "sub" / "up.txt").symlink_to("../../secret.txt")
    store.enqueue("sub/up.txt")
    fake = Fake()
    assert JobRunner(store, dirs, fake).process(store.claim()) is JobState.FAILED
    assert fake.calls == [] and (dirs.failed / "sub" / "up.txt").is_symlink()
    assert "outside-inbox" in (dirs.failed / "sub" / "up.txt.error.txt").read_text()


def test_a_swapped_folder_inside_failed_cannot_redirect_the_move(Fake, store, dirs, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (dirs.failed).mkdir()
    (dirs.failed / "sub").symlink_to(elsewhere)
    (dirs.inbox / "sub").mkdir()
    (dirs.inbox / "sub" / "empty.txt").write_text("")
    store.enqueue("sub/empty.txt")
    JobRunner(store, dirs, Fake(), max_attempts=1).process(store.claim())
    assert files(elsewhere) == []
    assert (dirs.inbox / "sub" / "empty.txt").exists()


def test_a_250_byte_name_is_translated(Fake, store, dirs):
    name = "あ" * 82 + ".txt"  # 246 + 4 bytes
    assert len(name.encode()) == 250
    (dirs.inbox / name).write_text("long\n")
    store.enqueue(name)
    assert JobRunner(store, dirs, Fake()).process(store.claim()) is JobState.DONE
    assert (dirs.outbox / ("あ" * 82 + ".zh.txt")).read_text() == "LONG\n"
    assert (dirs.done / name).exists()


def test_a_250_byte_name_that_fails_gets_its_report(Fake, store, dirs):
    name = "a" * 246 + ".txt"
    (dirs.inbox / name).write_text("")
    job_id = store.enqueue(name)
    assert JobRunner(store, dirs, Fake()).process(store.claim()) is JobState.FAILED
    assert (dirs.failed / name).exists()
    [report] = [p for p in dirs.failed.iterdir() if p.name.endswith(".error.txt")]
    assert len(report.name.encode()) <= 255 and report.name.startswith("a" * 200)
    assert "Error code:    empty" in report.read_text() and name in report.read_text()
    assert store.get(job_id).error_code == "empty"


def test_a_name_whose_output_name_would_be_too_long_fails_with_a_reason(Fake, store, dirs):
    name = "b" * 251 + ".txt"  # 255 bytes: NAME.zh.txt would be 258
    (dirs.inbox / name).write_text("text\n")
    store.enqueue(name)
    fake = Fake()
    assert JobRunner(store, dirs, fake).process(store.claim()) is JobState.FAILED
    assert fake.calls == [] and (dirs.failed / name).exists()
    [report] = [p for p in dirs.failed.iterdir() if p.name.endswith(".error.txt")]
    assert "Error code:    bad-name" in report.read_text() and "longer than 255 bytes" in report.read_text()


def test_fifo_and_dangling_symlink_go_to_failed_with_a_report(Fake, store, dirs, tmp_path):
    os.mkfifo(dirs.inbox / "pipe.txt")
    (dirs.inbox / "dangling.txt").symlink_to(dirs.inbox / "nothing-here.txt")
    runner = JobRunner(store, dirs, Fake())
    for name in ("pipe.txt", "dangling.txt"):
        store.enqueue(name)
        assert runner.process(store.claim()) is JobState.FAILED
        assert "Error code:    not-regular" in (dirs.failed / f"{name}.error.txt").read_text()
    assert files(dirs.inbox / "failed") == ["dangling.txt", "dangling.txt.error.txt", "pipe.txt",
                                            "pipe.txt.error.txt"]
    assert [p.name for p in dirs.inbox.iterdir()] == ["failed"]


def test_an_undecodable_name_goes_to_failed_with_a_report(Fake, store, dirs):
    raw = os.fsdecode(b"caf\xe9.txt")  # Latin-1 bytes: not UTF-8
    (dirs.inbox / raw).write_text("bonjour\n")
    job_id = store.enqueue(raw)
    assert store.get(job_id).source == "caf\\xe9.txt"
    assert JobRunner(store, dirs, Fake()).process(store.claim()) is JobState.FAILED
    assert os.path.exists(os.fsencode(dirs.failed) + b"/caf\xe9.txt")
    report = Path(os.fsdecode(os.fsencode(dirs.failed) + b"/caf\xe9.txt.error.txt")).read_text()
    assert "Error code:    bad-name" in report and "not valid UTF-8" in report
