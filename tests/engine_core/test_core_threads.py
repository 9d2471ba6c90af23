"""The worker's CPU threads (engine/threads.py): every core other processes leave idle, one fewer
per core they keep busy, read from /proc/stat."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from asmr_daemon.engine import threads
from asmr_daemon.engine.threads import INTERVAL_S, CpuShare, OthersLoad, threads_for


@pytest.mark.parametrize(("cores", "others", "expected"), [
    (2, 0.0, 2), (2, 0.25, 2), (2, 0.6, 1), (2, 1.0, 1), (2, 2.0, 1),
    (16, 0.1, 16), (16, 1.0, 15), (16, 3.5, 12), (1, 1.0, 1),
])
def test_threads_leave_the_cores_other_processes_keep_busy(cores, others, expected) -> None:
    assert threads_for(cores, others) == expected


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_fewer_threads_at_once_more_only_after_two_looks(monkeypatch) -> None:
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    before = torch.get_num_threads()
    loads, clock = [0.0, 0.0, 1.0, 0.0, 0.0, 2.2, 0.0, 0.0], Clock()
    share = CpuShare(0, load=lambda: loads.pop(0), clock=clock)
    try:
        assert share.adaptive and share.start() == 3 == torch.get_num_threads()  # the safe side first
        share.tick()
        assert len(loads) == 8  # not time to look yet
        seen = []
        for _ in range(8):
            clock.now += INTERVAL_S
            share.tick()
            seen.append(share.threads)
        assert seen == [3, 4, 3, 3, 4, 2, 2, 4]
        assert torch.get_num_threads() == 4
        loads += [2.2, 2.2]
        clock.now += 60  # idle for a minute: that look only starts a fresh window
        share.tick()
        assert share.threads == 4 and len(loads) == 1
        clock.now += INTERVAL_S
        share.tick()
        assert share.threads == 2
    finally:
        torch.set_num_threads(before)


def test_a_fixed_setting_is_kept_whatever_the_load() -> None:
    before = torch.get_num_threads()
    clock = Clock()
    share = CpuShare(1, load=lambda: 0.0, clock=clock)
    try:
        assert not share.adaptive and share.start() == 1
        clock.now += 10 * INTERVAL_S
        share.tick()
        assert share.threads == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_another_busy_process_is_seen_and_this_one_s_own_work_is_not() -> None:
    load = OthersLoad()
    end = time.monotonic() + 0.6
    while time.monotonic() < end:  # this process busy: not the others' load
        pass
    own = load.busy_cores()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        load.busy_cores()
        time.sleep(0.8)
        others = load.busy_cores()
    finally:
        busy.kill()
        busy.wait()
    assert others >= 0.6, others
    assert own < others
