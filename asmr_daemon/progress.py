"""Progress displays that suit where the output goes.

On a terminal: rich's live progress bars. On a pipe, a file or the journal a live display makes a
mess (rich cuts each refresh to 80 columns, ``━━━ 20… 0:00…``, and leaves a bar behind for every
task), so ``PlainProgress`` prints one plain line per task every few seconds and when it ends,
with the same ``add_task``/``update``/``advance``/``remove_task`` calls as ``rich.progress.Progress``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import Progress, ProgressColumn, TaskID
from rich.text import Text

PLAIN_EVERY_SECONDS = 5.0


def duration(seconds: float) -> str:
    """``75`` -> ``1:15``, ``3700`` -> ``1:01:40``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02}:{rest % 60:02}" if hours else f"{rest // 60}:{rest % 60:02}"


def eta_seconds(done: float, total: float | None, elapsed: float) -> float | None:
    """Time left at the average rate so far, None until something is done."""
    if not total or done <= 0 or elapsed <= 0 or done >= total:
        return 0.0 if total and done >= total else None
    return elapsed / done * (total - done)


@dataclass
class _Task:
    description: str
    total: float | None
    started: float
    completed: float = 0.0
    last_print: float | None = None  # None: nothing printed yet, the first update is news
    finished: bool = False


class PlainProgress:
    """A line per task at most every ``every`` seconds and when it completes; no escape codes."""

    def __init__(self, console: Console, every: float = PLAIN_EVERY_SECONDS, unit: str = "") -> None:
        self.console = console
        self.every = every
        self.unit = unit
        self._tasks: dict[int, _Task] = {}
        self._next = 0

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def add_task(self, description: str, total: float | None = 100.0, **_: Any) -> TaskID:
        task_id = self._next
        self._next += 1
        self._tasks[task_id] = _Task(description, total, started=time.monotonic())
        return TaskID(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        task = self._tasks[task_id]
        self.update(task_id, completed=task.completed + advance)

    def update(self, task_id: TaskID, *, completed: float | None = None, total: float | None = None,
               description: str | None = None, advance: float | None = None, **_: Any) -> None:
        task = self._tasks[task_id]
        if description is not None:
            task.description = description
        if total is not None:
            task.total = total
        if advance is not None:
            task.completed += advance
        if completed is not None:
            task.completed = completed
        now = time.monotonic()
        done = task.total is not None and task.completed >= task.total
        due = task.last_print is None or now - task.last_print >= self.every
        if (done and not task.finished) or (not done and due):
            task.finished = done
            task.last_print = now
            self.console.print(self.line(task, now), markup=False, highlight=False, soft_wrap=True)

    def remove_task(self, task_id: TaskID) -> None:
        self._tasks.pop(task_id, None)

    def line(self, task: _Task, now: float) -> str:
        elapsed = now - task.started
        description = Text.from_markup(task.description).plain
        if task.total is None:
            return f"{description}: {task.completed:g}{self.unit} ({duration(elapsed)})"
        percent = 100 * task.completed / task.total if task.total else 100
        text = f"{description}: {task.completed:g}/{task.total:g}{self.unit} ({percent:.0f}%), {duration(elapsed)}"
        left = eta_seconds(task.completed, task.total, elapsed)
        if left is not None and task.completed < task.total:
            text += f", about {duration(left)} left"
        return text


AnyProgress = Progress | PlainProgress


def make_progress(console: Console, *columns: str | ProgressColumn, transient: bool = False,
                  unit: str = "") -> AnyProgress:
    """rich's bars on a terminal, ``PlainProgress`` elsewhere (``unit``: e.g. ``" lines"``)."""
    if console.is_terminal:
        return Progress(*columns, console=console, transient=transient)
    return PlainProgress(console, unit=unit)



class StatusProgress:
    """``progress(done, total)`` for the daemon's file in flight: kept in the status record
    (``progress``: done, total, started; the file is the record's ``current``) for ``status``,
    at most every ``every`` seconds."""

    def __init__(self, status: Any, every: float = 1.0) -> None:
        self.status = status
        self.every = every
        self.started = time.time()
        self._last: float | None = None

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and self._last is not None and now - self._last < self.every:
            return
        self._last = now
        self.status.update(progress={"done": done, "total": total, "started": self.started})

    def clear(self) -> None:
        self.status.update(progress=None)


def describe_progress(current: str, progress: Any, now: float | None = None) -> str:
    """``script.txt: 12/48 lines (25%), about 0:40 left`` from a status record's ``progress``."""
    try:
        done, total = int(progress["done"]), int(progress["total"])
        elapsed = (time.time() if now is None else now) - float(progress["started"])
    except (KeyError, TypeError, ValueError):
        return f"{current}: starting"
    percent = 100 * done / total if total else 100
    text = f"{current}: {done}/{total} lines ({percent:.0f}%)"
    left = eta_seconds(done, total, elapsed)
    if done >= total:
        return text + ", writing the output"
    return text + (", estimating the time left" if left is None else f", about {duration(left)} left")
