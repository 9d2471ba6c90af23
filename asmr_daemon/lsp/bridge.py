"""``asmr-daemon lsp``: for editors that spawn a command (Helix, eglot, Neovim 0.7, VS Code
without socket support).

By default it is a byte pump between stdio and the running daemon's Unix socket -- the model
stays in the daemon, shared with the watch folder and other editors. ``--standalone`` loads the
model in this process instead (``service.root.run_standalone``: the daemon's composition root).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from pathlib import Path

from asmr_daemon.errors import DaemonNotRunning

_CHUNK = 65536


def connect(path: Path) -> socket.socket:
    """A connection to the daemon's language-server socket; DaemonNotRunning if nobody listens."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
        sock.close()
        from asmr_daemon.cli import command_name

        raise DaemonNotRunning(f"no daemon is running on the socket {path}",
                               f"start it with `{command_name()} serve` or `systemctl --user start asmr-daemon`, "
                               "or pass the --socket of the one you run") from exc
    return sock


def pump(sock: socket.socket, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """Copy stdin -> socket and socket -> stdout until the daemon closes the connection.

    The editor closing stdin half-closes the socket; the daemon then ends the session and
    closes its side, which ends this function.
    """

    def upstream() -> None:
        try:
            while data := os.read(stdin_fd, _CHUNK):
                sock.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, name="stdin->daemon", daemon=True).start()
    try:
        while data := sock.recv(_CHUNK):
            view = memoryview(data)
            while view:
                view = view[os.write(stdout_fd, view):]
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        sock.close()
    return 0


def run_bridge(socket_path: Path) -> int:
    try:
        sock = connect(socket_path)
    except DaemonNotRunning:
        from asmr_daemon.cli import command_name

        print(
            f"asmr-daemon lsp: no daemon is running (socket {socket_path}); "
            f"start it with `{command_name()} serve` or use --standalone",
            file=sys.stderr,
        )
        return 1
    return pump(sock)

