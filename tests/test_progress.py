"""Progress arithmetic and the plain (non-terminal) display, with an injected clock."""

from __future__ import annotations

import io

from rich.console import Console

from asmr_daemon import progress as progress_module
from asmr_daemon.progress import PlainProgress, describe_progress, duration, make_progress


def test_time_left_is_the_average_rate_so_far() -> None:
    record = {"done": 10, "total": 40, "started": 1000.0}
    assert describe_progress("a.txt", record, now=1005.0) == "a.txt: 10/40 lines (25%), about 0:15 left"
    assert describe_progress("a.txt", {**record, "done": 0}, now=1005.0) == \
        "a.txt: 0/40 lines (0%), estimating the time left"
    assert describe_progress("a.txt", {**record, "done": 40}, now=1005.0) == "a.txt: 40/40 lines (100%), writing the output"
    assert describe_progress("a.txt", None) == "a.txt: starting"
    assert (duration(75), duration(3700)) == ("1:15", "1:01:40")


def test_plain_progress_prints_whole_lines_now_and_then_and_once_at_the_end(monkeypatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    console = Console(file=out, width=40)
    bar = make_progress(console, unit=" lines")
    assert isinstance(bar, PlainProgress)
    task = bar.add_task("[bold]a very long script name that would not fit.txt", total=None)
    bar.update(task, completed=0, total=300)  # printed: the first news
    for done, at in ((10, 1.0), (20, 2.0), (150, 6.0), (299, 7.0), (300, 8.0)):
        clock[0] = at
        bar.update(task, completed=done)
    bar.remove_task(task)
    assert out.getvalue().splitlines() == [
        "a very long script name that would not fit.txt: 0/300 lines (0%), 0:00",
        "a very long script name that would not fit.txt: 150/300 lines (50%), 0:06, about 0:06 left",
        "a very long script name that would not fit.txt: 300/300 lines (100%), 0:08",
    ]
