"""A minimal language-server client for one-shot commands to the running daemon
(``asmr-daemon use-adapter``): initialize, initialized, one ``workspace/executeCommand``,
shutdown, exit -- over the daemon's Unix socket, with the standard ``Content-Length`` framing."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from asmr_daemon import __version__
from asmr_daemon.errors import AsmrError


class LspClient:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self._next_id = 0

    # -- framing -------------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}, ensure_ascii=False).encode("utf-8")
        self._sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def receive(self) -> dict[str, Any]:
        while b"\r\n\r\n" not in self._buffer:
            self._fill()
        header, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        length = next((int(line.split(b":", 1)[1]) for line in header.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), None)
        if length is None:
            raise AsmrError(f"the daemon sent a message without Content-Length: {header!r}")
        while len(self._buffer) < length:
            self._fill()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return json.loads(body)

    def _fill(self) -> None:
        data = self._sock.recv(65536)
        if not data:
            raise AsmrError("the daemon closed the connection")
        self._buffer += data

    # -- requests ------------------------------------------------------------------------------

    def request(self, method: str, params: Any = None) -> Any:
        """Send a request and wait for its answer; server requests in between get a null result."""
        self._next_id += 1
        my_id = self._next_id
        self.send({"id": my_id, "method": method, "params": params})
        while True:
            message = self.receive()
            if message.get("id") == my_id and "method" not in message:
                if "error" in message:
                    raise AsmrError(str(message["error"].get("message") or message["error"]))
                return message.get("result")
            if "method" in message and "id" in message:  # e.g. window/workDoneProgress/create
                self.send({"id": message["id"], "result": None})

    def notify(self, method: str, params: Any = None) -> None:
        self.send({"method": method, "params": params})


def execute_command(socket_path: Path, command: str, arguments: list[Any], *, timeout: float = 600.0) -> Any:
    """Run one ``workspace/executeCommand`` on the daemon; DaemonNotRunning if nobody listens,
    AsmrError with the daemon's message if the command fails."""
    from asmr_daemon.lsp.bridge import connect

    sock = connect(Path(socket_path))
    sock.settimeout(timeout)
    try:
        client = LspClient(sock)
        client.request("initialize", {"processId": None, "rootUri": None, "capabilities": {},
                                      "clientInfo": {"name": "asmr-daemon-cli", "version": __version__}})
        client.notify("initialized", {})
        try:
            return client.request("workspace/executeCommand", {"command": command, "arguments": arguments})
        finally:
            try:
                client.request("shutdown")
                client.notify("exit")
            except (AsmrError, OSError):
                pass
    except TimeoutError:
        raise AsmrError(f"the daemon did not answer within {timeout:.0f} s") from None
    finally:
        sock.close()
