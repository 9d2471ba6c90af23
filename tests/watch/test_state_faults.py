"""Damaged or unusable state (issue 11 items 8 and 11): one clear message, never a traceback
or a crash loop; a damaged queue is set aside and the inbox scanned again."""

from __future__ import annotations

import pytest
from poll import poll_until

from asmr_daemon.errors import ConfigError
from asmr_daemon.service.daemon import Daemon

from .conftest import make_settings
from .test_daemon import outputs


def test_a_garbage_job_queue_is_set_aside_and_the_inbox_rescanned(folders, fake, caplog):
    inbox, state = folders["inbox"], folders["state"]
    inbox.mkdir(parents=True)
    state.mkdir(parents=True)
    (state / "jobs.sqlite").write_bytes(b"\x00garbage, not SQLite\n" * 200)
    for name in ("a.txt", "b.txt"):
        (inbox / name).write_text(f"{name}\n")
    daemon = Daemon(make_settings(folders), fake)
    daemon.start()
    try:
        poll_until(lambda: daemon.idle() and len(outputs(folders["outbox"])) == 2, what="both outputs")
        assert daemon.store.counts()["done"] == 2
    finally:
        daemon.shutdown()
    [aside] = state.glob("jobs.sqlite.corrupt-*")
    assert aside.read_bytes().startswith(b"\x00garbage")
    assert "the job queue was damaged and set aside as" in caplog.text


def test_after_losing_the_queue_outputs_already_written_are_not_translated_again(folders, fake):
    """A crash after the output was published but before the input moved, then a damaged queue:
    the record beside the output (source hash) recognises the work as done."""
    from asmr_daemon.output_files import publish, sha256_of

    inbox, outbox, state = folders["inbox"], folders["outbox"], folders["state"]
    inbox.mkdir(parents=True)
    state.mkdir(parents=True)
    (inbox / "a.txt").write_text("already done\n")
    (inbox / "b.txt").write_text("new\n")
    publish(b"ALREADY DONE\n", outbox / "a.zh.txt", source_sha256=sha256_of(inbox / "a.txt"))
    (state / "jobs.sqlite").write_bytes(b"garbage" * 500)
    daemon = Daemon(make_settings(folders), fake)
    daemon.start()
    try:
        poll_until(lambda: daemon.idle() and daemon.store.counts()["done"] == 2, what="both jobs done")
    finally:
        daemon.shutdown()
    assert [p.name for p in fake.calls] == ["b.txt"]
    assert outputs(outbox) == {"a.zh.txt": "ALREADY DONE\n", "b.zh.txt": "NEW\n"}
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["a.txt", "b.txt"]


def test_a_state_dir_that_cannot_be_used_is_one_clear_error(folders, fake, tmp_path):
    folders["state"] = tmp_path / "a-file"
    folders["state"].write_text("not a folder\n")
    daemon = Daemon(make_settings(folders), fake)
    with pytest.raises(ConfigError, match="cannot use the state dir .*a-file") as caught:
        daemon.start()
    assert "writable" in (caught.value.hint or "")
    daemon.shutdown()


def test_two_daemons_with_different_state_dirs_on_one_inbox(folders, fake, tmp_path):
    first = Daemon(make_settings(folders), fake)
    first.start()
    try:
        other = dict(folders, state=tmp_path / "other-state")
        with pytest.raises(ConfigError, match="another asmr-daemon already watches the inbox"):
            Daemon(make_settings(other), fake).start()
        (folders["inbox"] / "a.txt").write_text("once\n")
        poll_until(lambda: first.idle() and len(outputs(folders["outbox"])) == 1, what="the output")
        assert [p.name for p in fake.calls] == ["a.txt"]
    finally:
        first.shutdown()
    # Once the first one stopped, the inbox is free again.
    second = Daemon(make_settings(dict(folders, state=tmp_path / "other-state")), fake)
    second.start()
    second.shutdown()
