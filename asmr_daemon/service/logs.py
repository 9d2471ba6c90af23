"""Logging for the daemon and the CLI: plain ``logging`` to stderr, journald-friendly."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO


class _JournalFormatter(logging.Formatter):
    """Prefixes ``<N>`` (syslog priority) so journald files each line at its level."""

    LEVELS = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        priority = self.LEVELS.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def is_journal(stream: Any) -> bool:
    """True when ``stream`` is the journal: systemd sets ``$JOURNAL_STREAM`` to the device and
    inode of the stream it connected, so an inherited variable alone (a child whose stderr is a
    pipe or a file) does not count."""
    try:
        device, inode = (int(part) for part in os.environ.get("JOURNAL_STREAM", "").split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


def setup_logging(verbose: bool = False, stream: TextIO | None = None) -> None:
    """Plain ``logging`` to stderr: a rich handler on a terminal (with the time); on a pipe or in a
    file plain lines with a timestamp; in the journal plain lines without one (journald adds its
    own) but with syslog priorities."""
    stream = stream or sys.stderr
    level = logging.DEBUG if verbose or os.environ.get("ASMR_DEBUG") else logging.INFO
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_asmr", False):
            root.removeHandler(old)
    handler: logging.Handler
    if stream.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(file=stream), show_path=False, rich_tracebacks=True)
    else:
        handler = logging.StreamHandler(stream)
        fmt = "%(levelname)s %(name)s: %(message)s"
        handler.setFormatter(_JournalFormatter(fmt) if is_journal(stream)
                             else logging.Formatter("%(asctime)s " + fmt, "%Y-%m-%d %H:%M:%S"))
    setattr(handler, "_asmr", True)  # marks our handler, so a second call replaces it
    root.addHandler(handler)
    root.setLevel(level)
    # watchdog logs every event at DEBUG; keep the journal readable.
    logging.getLogger("watchdog").setLevel(logging.WARNING)
