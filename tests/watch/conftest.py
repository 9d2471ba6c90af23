"""Helpers for the watch-folder tests: a fake ``translate_file`` injected through the Python API
(upper-cases the text), settings pointing at temp folders, a running in-process daemon."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from asmr_daemon.config import Settings
from asmr_daemon.errors import BinaryFileError, EmptyFileError
from asmr_daemon.service.daemon import Daemon
from asmr_daemon.watch.jobs import JobStore
from asmr_daemon.watch.runner import Folders


class FakeTranslator:
    """Writes the upper-cased text atomically; counts calls per source name."""

    def __init__(self) -> None:
        self.calls: list[Path] = []
        self.lock = threading.Lock()

    def __call__(self, src: Path, dest: Path) -> None:
        data = Path(src).read_bytes()
        with self.lock:
            self.calls.append(Path(src))
        if not data.strip():
            raise EmptyFileError(f"{src.name} is empty", "drop a file that has text in it")
        if b"\0" in data:
            raise BinaryFileError(f"{src.name} is not a text file", "drop a .txt, .srt, .vtt or .lrc script")
        tmp = dest.with_name(dest.name + ".fake-tmp")
        tmp.write_bytes(data.decode("utf-8").upper().encode("utf-8"))
        os.replace(tmp, dest)


@pytest.fixture
def store(tmp_path: Path):
    """A job queue in a temp state dir, with a counting clock."""
    s = JobStore(tmp_path / "state" / "jobs.sqlite", clock=iter(range(1000, 100000)).__next__)
    yield s
    s.close()


@pytest.fixture
def dirs(tmp_path: Path) -> Folders:
    """Inbox and outbox side by side, done/ and failed/ inside the inbox (the defaults)."""
    f = Folders(inbox=tmp_path / "inbox", outbox=tmp_path / "outbox", done=tmp_path / "inbox" / "done",
                failed=tmp_path / "inbox" / "failed")
    f.inbox.mkdir()
    f.outbox.mkdir()
    return f


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    return {"inbox": tmp_path / "inbox", "outbox": tmp_path / "outbox", "state": tmp_path / "state"}


def make_settings(folders: dict[str, Path], **watch) -> Settings:
    settings = Settings()
    settings.paths.inbox = folders["inbox"]
    settings.paths.outbox = folders["outbox"]
    settings.paths.state_dir = folders["state"]
    settings.watch.stable_seconds = watch.pop("stable_seconds", 0.3)
    settings.watch.rescan_seconds = watch.pop("rescan_seconds", 2.0)
    for key, value in watch.items():
        setattr(settings.watch, key, value)
    return settings


@pytest.fixture
def settings(folders) -> Settings:
    return make_settings(folders)


@pytest.fixture
def Fake() -> type[FakeTranslator]:
    return FakeTranslator


@pytest.fixture
def fake() -> FakeTranslator:
    return FakeTranslator()


@pytest.fixture
def start_daemon(folders, fake):
    """Start an in-process daemon (threads, no signals); stopped at the end of the test."""
    started: list[Daemon] = []

    def start(**watch) -> Daemon:
        daemon = Daemon(make_settings(folders, **watch), fake)
        daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.shutdown()
