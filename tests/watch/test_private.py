"""Private by default (issue 11 item 7): with umask 022 the state dir is 0700 and the databases,
outputs, subfolders and reports the daemon creates are 0600/0700."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from poll import poll_until


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_state_outputs_and_reports_are_private_whatever_the_umask(umask_022, start_daemon, folders):
    inbox, outbox, state = folders["inbox"], folders["outbox"], folders["state"]
    (inbox / "work").mkdir(parents=True)
    (inbox / "work" / "a.txt").write_text("hello\n")
    (inbox / "empty.txt").write_text("")
    daemon = start_daemon()
    poll_until(lambda: daemon.idle() and daemon.store.counts()["done"] == 1
             and daemon.store.counts()["failed"] == 1, what="one output, one failure")
    assert mode(state) == 0o700
    assert mode(state / "jobs.sqlite") == 0o600
    assert mode(outbox) == 0o700 and mode(outbox / "work") == 0o700
    assert mode(inbox / "failed" / "empty.txt.error.txt") == 0o600
    assert mode(inbox / "done") == 0o700 and mode(inbox / "done" / "work") == 0o700


def test_an_existing_open_state_dir_and_database_are_tightened(umask_022, tmp_path):
    from asmr_daemon.engine.memory import TranslationMemory

    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    TranslationMemory(state / "memory.sqlite").close()
    os.chmod(state / "memory.sqlite", 0o644)  # what an older version left behind
    TranslationMemory(state / "memory.sqlite").close()
    assert mode(state) == 0o700 and mode(state / "memory.sqlite") == 0o600


def test_written_outputs_are_0600(umask_022, tmp_path):
    from asmr_daemon.scripts.writer import atomic_write_bytes

    atomic_write_bytes(tmp_path / "out" / "a.zh.txt", b"x")
    assert mode(tmp_path / "out" / "a.zh.txt") == 0o600 and mode(tmp_path / "out") == 0o700


def test_outputs_can_follow_the_inbox_group_when_configured(folders, fake):
    from asmr_daemon.service.daemon import Daemon

    from .conftest import make_settings

    if os.geteuid() != 0:
        pytest.skip("needs root to give the inbox another group")
    inbox, outbox = folders["inbox"], folders["outbox"]
    inbox.mkdir(parents=True)
    os.chown(inbox, -1, 100)
    (inbox / "a.txt").write_text("shared\n")
    settings = make_settings(folders)
    settings.output.group_from_inbox = True
    daemon = Daemon(settings, fake)
    daemon.start()
    try:
        poll_until(lambda: daemon.idle() and (outbox / "a.zh.txt").exists(), what="the output")
    finally:
        daemon.shutdown()
    st = os.stat(outbox / "a.zh.txt")
    assert st.st_gid == 100 and stat.S_IMODE(st.st_mode) == 0o640
