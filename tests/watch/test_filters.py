"""Ignore and refusal rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from asmr_daemon.watch.filters import InboxFilter


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    (tmp_path / "inbox").mkdir()
    return tmp_path / "inbox"


def make(inbox: Path, rel: str, text: str = "x") -> Path:
    path = inbox / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", [".hidden.txt", ".a.txt.swp", "~$script.docx", "a.txt~", "dl.txt.part",
                                  "dl.txt.crdownload", "x.tmp", "a.swp", "a.txt.error.txt"])
def test_temporary_and_hidden_names_are_ignored(inbox, name):
    filt = InboxFilter.for_folders(inbox)
    assert filt.ignore_reason(make(inbox, name)) is not None


def test_plain_scripts_and_subfolders_are_taken(inbox):
    filt = InboxFilter.for_folders(inbox)
    assert filt.ignore_reason(make(inbox, "a.txt")) is None
    assert filt.ignore_reason(make(inbox, "work/track1.srt")) is None


def test_daemon_folders_and_hidden_folders_are_ignored(inbox):
    filt = InboxFilter.for_folders(inbox, inbox / "done", inbox / "failed", inbox / "out", inbox.parent / "elsewhere")
    assert filt.excluded == (inbox / "done", inbox / "failed", inbox / "out")
    for rel in ("done/a.txt", "failed/b.txt", "out/a.zh.txt", "done/sub/c.txt", ".git/d.txt"):
        assert filt.ignore_reason(make(inbox, rel)) is not None, rel
    assert filt.ignore_reason(make(inbox, "donegood/a.txt")) is None


def test_outside_the_inbox_and_folders_are_ignored_fifos_are_not(inbox, tmp_path):
    filt = InboxFilter.for_folders(inbox)
    assert filt.ignore_reason(make(tmp_path, "other.txt")) is not None
    (inbox / "folder").mkdir()
    assert filt.ignore_reason(inbox / "folder") == "a folder (folders are walked, not translated)"
    os.mkfifo(inbox / "pipe.txt")
    # Not ignored: the job refuses it with a report (ignoring it left the user waiting forever).
    assert filt.ignore_reason(inbox / "pipe.txt") is None
    assert filt.ignore_reason(inbox / "missing.txt") == "gone"


def test_symlinks_to_files_are_not_ignored(inbox, tmp_path):
    secret = make(tmp_path, "secret.txt", "private")
    (inbox / "link.txt").symlink_to(secret)
    (inbox / "alias.txt").symlink_to(make(inbox, "sub/real.txt"))
    filt = InboxFilter.for_folders(inbox)
    assert filt.ignore_reason(inbox / "link.txt") is None  # not ignored: the user must learn why
    assert filt.ignore_reason(inbox / "alias.txt") is None


def test_dangling_symlink_is_judged_by_the_job_symlink_to_folder_is_ignored(inbox, tmp_path):
    (inbox / "dangling.txt").symlink_to(tmp_path / "nope")
    (inbox / "dirlink").symlink_to(tmp_path)
    filt = InboxFilter.for_folders(inbox)
    assert filt.ignore_reason(inbox / "dangling.txt") is None
    assert filt.ignore_reason(inbox / "dirlink") is not None
