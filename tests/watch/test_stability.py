"""The stability tracker with an injected clock and stat: no sleeping."""

from __future__ import annotations

from pathlib import Path

from asmr_daemon.watch.stability import StabilityTracker


class FakeFS:
    def __init__(self) -> None:
        self.files: dict[Path, tuple[int, int]] = {}

    def stat(self, path: Path):
        return self.files.get(path)


def test_file_is_ready_only_after_quiet_period():
    fs, p = FakeFS(), Path("/in/a.txt")
    fs.files[p] = (10, 1)
    tracker = StabilityTracker(2.0, stat=fs.stat)
    tracker.note(p, now=0.0)
    assert tracker.ready(1.9) == []
    assert tracker.ready(2.0) == [p]
    assert tracker.ready(10.0) == []  # handed on once, then forgotten
    assert p not in tracker


def test_growing_file_is_never_ready_and_then_unstable():
    fs, p = FakeFS(), Path("/in/grow.txt")
    tracker = StabilityTracker(2.0, max_wait_seconds=30.0, stat=fs.stat)
    fs.files[p] = (0, 0)
    tracker.note(p, now=0.0)
    for second in range(1, 30):
        fs.files[p] = (second * 100, second)  # grows every second
        assert tracker.ready(float(second)) == []
    assert tracker.take_unstable() == []
    fs.files[p] = (9999, 99)
    assert tracker.ready(30.0) == []
    [unstable] = tracker.take_unstable()
    assert unstable.path == p and unstable.waited == 30.0
    assert tracker.take_unstable() == []  # reported once
    assert p not in tracker


def test_change_restarts_quiet_period_but_not_max_wait():
    fs, p = FakeFS(), Path("/in/b.txt")
    fs.files[p] = (1, 1)
    tracker = StabilityTracker(2.0, max_wait_seconds=0, stat=fs.stat)  # 0 = wait forever
    tracker.note(p, now=0.0)
    fs.files[p] = (2, 2)
    assert tracker.ready(1.5) == []
    assert tracker.ready(3.0) == []   # changed at 1.5, quiet only 1.5 s
    assert tracker.ready(3.5) == [p]


def test_event_on_same_signature_restarts_quiet_period():
    fs, p = FakeFS(), Path("/in/c.txt")
    fs.files[p] = (1, 1)
    tracker = StabilityTracker(2.0, stat=fs.stat)
    tracker.note(p, now=0.0)
    tracker.note(p, now=1.5)  # e.g. closed after a write that kept size and mtime
    assert tracker.ready(2.5) == []
    assert tracker.ready(3.5) == [p]


def test_vanished_file_is_dropped_silently():
    fs, p = FakeFS(), Path("/in/d.txt")
    fs.files[p] = (1, 1)
    tracker = StabilityTracker(1.0, stat=fs.stat)
    tracker.note(p, now=0.0)
    del fs.files[p]
    assert tracker.ready(5.0) == []
    assert tracker.take_unstable() == []
    assert len(tracker) == 0


def test_real_stat_of_a_real_file(tmp_path):
    p = tmp_path / "e.txt"
    p.write_text("x")
    tracker = StabilityTracker(1.0)
    tracker.note(p, now=100.0)
    assert tracker.ready(100.5) == []
    assert tracker.ready(101.0) == [p]
