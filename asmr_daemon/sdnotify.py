"""sd_notify without a library: one datagram to ``$NOTIFY_SOCKET``.

systemd reads ``KEY=VALUE`` lines from each datagram (``READY=1``, ``STATUS=...``,
``WATCHDOG=1``, ``STOPPING=1``). A leading ``@`` in the socket address means the Linux abstract
namespace (the name starts with a NUL byte). Outside systemd the variable is unset and every call
is a no-op, so the daemon runs the same way in a terminal.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _address(environ: Mapping[str, str]) -> str | None:
    address = environ.get("NOTIFY_SOCKET")
    if not address:
        return None
    if address.startswith("@"):
        return "\0" + address[1:]
    return address


def notify(*lines: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``lines`` (``"READY=1"``, ``"STATUS=loading model"``...) as one datagram.

    Returns True when a datagram was sent. Never raises: a missing or dead notify socket must
    not take the daemon down (systemd itself then notices the missing pings).
    """
    address = _address(os.environ if environ is None else environ)
    if address is None or not lines:
        return False
    payload = "\n".join(lines).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(payload)
    except OSError as exc:
        log.debug("sd_notify to %r failed: %s", address, exc)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC`` (as sd_watchdog_enabled
    advises), or None when systemd does not expect pings.

    ``$WATCHDOG_PID``, when set, names the process that must ping; for any other process (e.g. a
    child that inherited the environment) this returns None.
    """
    environ = os.environ if environ is None else environ
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = environ.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 / 2 if value > 0 else None
