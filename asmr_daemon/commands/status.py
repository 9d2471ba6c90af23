"""Show whether the daemon runs, its model and adapter, device and memory, the job queue and
recent failures. Works when the daemon is down (reads the state dir)."""

from __future__ import annotations

import argparse
import datetime
import os
import time
from pathlib import Path
from typing import Any

# A daemon writes its status record at least every HEARTBEAT_SECONDS (service.py); three missed
# beats mean it is hung or gone, whatever the pid says (pids get reused).
STALE_AFTER_SECONDS = 20.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", metavar="DIR", help="the daemon's state dir (default: from the settings)")
    parser.add_argument("--watch", action="store_true", help="keep showing the status, updated live (Ctrl-C ends it)")
    parser.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                        help="how often --watch updates (default: 1)")
    parser.add_argument("--socket", metavar="PATH",
                        help="the daemon's editor socket (default: [lsp] socket or $XDG_RUNTIME_DIR/asmr-daemon/lsp.sock)")


def pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def daemon_state(record: dict[str, Any] | None, now: float | None = None) -> tuple[bool, str]:
    """(running, one-line description) from the status record."""
    now = time.time() if now is None else now
    if not record:
        return False, "not running (it never ran with this state dir)"
    phase = record.get("phase", "?")
    pid = record.get("pid")
    if phase == "stopped" or not pid_alive(pid):
        return False, f"not running (last pid {pid}, {phase if phase == 'stopped' else 'ended unexpectedly'})"
    age = now - float(record.get("heartbeat", 0))
    if age > STALE_AFTER_SECONDS and phase != "loading":
        return False, f"not responding (pid {pid} alive, last heartbeat {age:.0f} s ago)"
    return True, f"{phase} (pid {pid})"


def worker_rows(record: dict[str, Any], now: float | None = None) -> list[tuple[str, str]]:
    """The job worker's own heartbeat (a live process can have a dead worker) and files that wait
    to be queued, as (label, rich text) rows."""
    now = time.time() if now is None else now
    rows: list[tuple[str, str]] = []
    worker = record.get("worker")
    if isinstance(worker, dict):
        age = now - float(worker.get("beat") or 0)
        if not worker.get("alive"):
            rows.append(("job worker", f"[red]stopped (last beat {age:.0f} s ago): files are not translated[/]"))
        elif worker.get("problem"):
            rows.append(("job worker", f"[yellow]waiting: {worker['problem']} (retrying)[/]"))
        else:
            rows.append(("job worker", "[green]alive[/]"))
    unqueued = record.get("unqueued")
    if isinstance(unqueued, dict) and unqueued.get("count"):
        rows.append(("not queued yet", f"[yellow]{unqueued['count']} file(s): {unqueued.get('problem')} "
                                       "(retrying)[/]"))
    return rows


def _when(stamp: Any) -> str:
    try:
        return datetime.datetime.fromtimestamp(float(stamp)).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return "?"


def _gib(value: Any) -> str:
    return f"{int(value) / 2**30:.2f} GiB" if isinstance(value, (int, float)) else "?"


def _generation_server(settings: Any, record: dict[str, Any] | None) -> tuple[bool, str] | None:
    """With ``backend = "openai"`` (the settings, or the running daemon's record): a live probe of the
    server, so an outage shows even while nothing is being translated. None for the local backend."""
    from dataclasses import replace

    model = (record or {}).get("model") or {}
    device = str(model.get("device") or "")
    if not device.startswith("remote ") and settings.model.backend != "openai":
        return None
    openai = settings.openai
    if device.startswith("remote "):  # what the daemon actually uses beats the config file
        openai = replace(openai, base_url=device.removeprefix("remote "), model=str(model.get("base_model") or openai.model))
    from asmr_daemon.engine.remote import probe

    return probe(openai)


def review_rows(outbox: Path, limit: int = 5) -> list[str]:
    """The "to review" row (outputs with a review report in the outbox), then the newest reports."""
    from asmr_daemon.review import reports_in

    reports = reports_in(outbox) if outbox.is_dir() else []
    if not reports:
        return ["nothing flagged"]
    lines = sum(count for _, count in reports)
    head = f"{len(reports)} output{'s' if len(reports) != 1 else ''} with flagged lines ({lines} line{'s' if lines != 1 else ''})"
    listed = [f"  {path} ({count} line{'s' if count != 1 else ''})" for path, count in reports[:limit]]
    more = [f"  ... and {len(reports) - limit} more"] if len(reports) > limit else []
    return [head, "review reports (newest first):", *listed, *more]


def locate(settings: Any, state_dir: Path) -> tuple[Path, str | None]:
    """The state dir to show: the configured one while its daemon runs, else the one of a daemon
    that answers on the socket; and a note when the socket told us."""
    from asmr_daemon.errors import ConfigError
    from asmr_daemon.service.state import STATUS_FILE, StatusFile

    if state_dir.exists() and not state_dir.is_dir():
        raise ConfigError(f"state dir {state_dir} is a file, not a folder", "pass the daemon's --state-dir DIR")
    running, _ = daemon_state(StatusFile.read(state_dir / STATUS_FILE))
    found = None if running else find_through_socket(settings, state_dir)
    if found is None:
        return state_dir, None
    its_state, note = found
    return its_state or state_dir, note


def find_through_socket(settings: Any, state_dir: Path) -> tuple[Path | None, str] | None:
    """A daemon that answers on the socket while ``state_dir`` shows none: its own state dir, and a
    note saying how it was found."""
    from asmr_daemon.preflight import daemon_behind_socket, socket_path

    path = socket_path(settings)
    behind = daemon_behind_socket(path)
    if behind is None:
        return None
    pid, its_state = behind
    if its_state is None:
        return None, f"but a daemon (pid {pid}) answers on {path}: pass its --state-dir"
    if its_state == state_dir:
        return None
    return its_state, f"found through its socket {path}; its state dir is {its_state}, not {state_dir}"


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from asmr_daemon.config import load_settings

    settings = load_settings(Path(args.config) if args.config else None,
                             {("paths", "state_dir"): getattr(args, "state_dir", None),
                              ("lsp", "socket"): getattr(args, "socket", None)})
    state_dir, note = locate(settings, Path(os.path.abspath(settings.paths.state_dir)))
    console = Console()
    if note:
        console.print(f"daemon: {note}", markup=False, highlight=False, soft_wrap=True)
    if not getattr(args, "watch", False):
        console.print(view(settings, state_dir))
        return 0
    return watch(console, lambda: view(settings, state_dir), max(0.1, args.interval))


def watch(console: Any, render: Any, interval: float) -> int:
    """``status --watch``: a live view on a terminal (rich Live), a fresh snapshot every ``interval``
    seconds elsewhere; Ctrl-C ends it."""
    from rich.live import Live

    try:
        if console.is_terminal:
            with Live(render(), console=console, auto_refresh=False, transient=False) as live:
                while True:
                    time.sleep(interval)
                    live.update(render(), refresh=True)
        while True:
            console.print(f"--- {datetime.datetime.now():%Y-%m-%d %H:%M:%S}", markup=False, highlight=False)
            console.print(render())
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0


def view(settings: Any, state_dir: Path) -> Any:
    """Everything ``status`` shows, as one renderable (read fresh from the state dir)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from asmr_daemon.service.state import JOBS_FILE, STATUS_FILE, StatusFile
    from asmr_daemon.watch.jobs import Job, read_only_counts

    record = StatusFile.read(state_dir / STATUS_FILE)
    table = _daemon_table(settings, record)
    table.add_row("state dir", str(state_dir))
    queue = read_only_counts(state_dir / JOBS_FILE)
    if queue is None:
        table.add_row("jobs", "none yet")
        failures: list[Job] = []
    else:
        counts, failures = queue
        table.add_row("jobs", ", ".join(f"{counts[k]} {k}" for k in ("queued", "running", "done", "failed")))
    outbox = Path(os.path.abspath(Path(str((record or {}).get("outbox") or settings.paths.outbox)).expanduser()))
    reviews = review_rows(outbox)
    table.add_row("to review", reviews[0])
    parts: list[Any] = [table, *(Text(line) for line in reviews[1:])]
    if failures:
        failed = Table(title="recent failures", title_justify="left")
        for column in ("when", "file", "code", "detail"):
            failed.add_column(column, overflow="fold")
        for job in failures:
            failed.add_row(_when(job.finished), job.source, job.error_code or "", job.error_detail or "")
        parts.append(failed)
    return Group(*parts)


def _daemon_table(settings: Any, record: dict[str, Any] | None) -> Any:
    from rich.table import Table

    from asmr_daemon.progress import describe_progress

    running, line = daemon_state(record)
    table = Table(title="asmr-daemon", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("daemon", f"[green]{line}[/]" if running else f"[red]{line}[/]")
    if record:
        model = record.get("model") or {}
        table.add_row("started", _when(record.get("started")))
        table.add_row("model", str(model.get("base_model", "?")) + ("" if model.get("loaded") else " (loading)"))
        table.add_row("adapter", str(model.get("adapter") or "none"))
        if model.get("base_loads") is not None:
            table.add_row("base model loads", str(model["base_loads"]))
        table.add_row("device", f"{model.get('device', '?')} {model.get('dtype', '')}".strip())
        table.add_row("model memory", _gib(model.get("memory_bytes")))
        table.add_row("process memory", _gib(record.get("rss_bytes")))
        table.add_row("inbox", str(record.get("inbox", settings.paths.inbox)))
        table.add_row("outbox", str(record.get("outbox", settings.paths.outbox)))
        if record.get("current") and running:
            table.add_row("translating", describe_progress(str(record["current"]), record.get("progress")))
        if running:
            for label, text in worker_rows(record):
                table.add_row(label, text)
    server = _generation_server(settings, record)
    if server is not None:
        ok, detail = server
        table.add_row("generation server", f"[green]{detail}[/]" if ok else f"[red]unreachable: {detail}[/]")
    return table
