"""One editor connection: who may talk (peer uid, token), how much (frames, requests in flight,
unread output), and the message loop that feeds pygls.

* Unix socket: the socket is 0600 in a 0700 directory, and the peer's uid (``SO_PEERCRED``)
  must be ours.
* TCP, loopback included: the first frame, at most ``PRE_AUTH_BODY_BYTES`` and within
  ``auth_seconds``, must be ``initialize`` carrying ``initializationOptions.token``. A wrong or
  missing token gets one error answer; anything else (HTTP, garbage) gets nothing. Either way
  the connection is closed and nothing is executed.
* A client that leaves its answers unread past the transport's high-water mark gets no more
  requests served; after ``stall_seconds`` of that it is disconnected, and output beyond
  ``max_output_bytes`` disconnects at once. (How many requests run at once: ``loop``.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct

from asmr_daemon.lsp.framing import PRE_AUTH_BODY_BYTES, Limits, frame, read_frame
from asmr_daemon.lsp.token import token_matches

logger = logging.getLogger(__name__)

UNAUTHORIZED = -32001
TOKEN_REFUSED = "asmr-daemon: this address needs a token: set initializationOptions.token to [lsp] token or the contents of STATE_DIR/lsp.token"
_HIGH_WATER = 1 << 20


class Disconnect(Exception):
    """End this connection (logged as one line, never a traceback)."""


class GuardedWriter:
    """What pygls writes to: the stream writer, with a cap on output the client has not read."""

    def __init__(self, writer: asyncio.StreamWriter, limits: Limits, peer: str) -> None:
        self._writer = writer
        self._limits = limits
        self._peer = peer
        self._watch: asyncio.TimerHandle | None = None
        writer.transport.set_write_buffer_limits(high=_HIGH_WATER)

    def write(self, data: bytes) -> None:
        transport = self._writer.transport
        if transport.is_closing():
            return
        self._writer.write(data)
        unread = transport.get_write_buffer_size()
        if unread > self._limits.max_output_bytes:
            self._hang_up(f"{unread} bytes of answers unread")
        elif unread > _HIGH_WATER and self._watch is None:
            self._watch = asyncio.get_running_loop().call_later(self._limits.stall_seconds, self._check)

    def _check(self) -> None:
        """``stall_seconds`` after the unread output passed the high-water mark: still no room?"""
        self._watch = None
        if self._writer.transport.get_write_buffer_size() > _HIGH_WATER // 4:
            self._hang_up(f"it has not read its answers for {self._limits.stall_seconds:.0f} s")

    def _hang_up(self, why: str) -> None:
        logger.warning("editor %s does not read its answers (%s): disconnected", self._peer, why)
        self._writer.transport.abort()

    def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        self._writer.close()

    async def wait_writable(self) -> None:
        """Return once the client has read enough of its output; Disconnect after a stall."""
        try:
            await asyncio.wait_for(self._writer.drain(), self._limits.stall_seconds)
        except TimeoutError:
            self._writer.transport.abort()
            raise Disconnect(f"it has not read its answers for {self._limits.stall_seconds:.0f} s") from None


def peer_uid(writer: asyncio.StreamWriter) -> int | None:
    """The uid of a Unix-socket peer (Linux ``SO_PEERCRED``); None where unknown."""
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def check_unix_peer(writer: asyncio.StreamWriter) -> None:
    uid = peer_uid(writer)
    if uid is not None and uid != os.geteuid():
        raise Disconnect(f"its uid {uid} is not this user's")


async def authenticate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limits: Limits,
                       token: str) -> bytes:
    """Read the first frame of a TCP connection; return it if it is ``initialize`` with the
    token, else answer an ``initialize`` with an error, and raise Disconnect."""
    try:
        body = await asyncio.wait_for(
            read_frame(reader, max_header_bytes=limits.max_header_bytes, max_body_bytes=PRE_AUTH_BODY_BYTES),
            limits.auth_seconds,
        )
    except TimeoutError:
        raise Disconnect("no initialize in time") from None
    if body is None:
        raise Disconnect("it closed before initialize")
    try:
        message = json.loads(body)
    except ValueError:
        raise Disconnect("its first message is not JSON") from None
    if not isinstance(message, dict) or message.get("method") != "initialize" or "id" not in message:
        raise Disconnect("its first message is not initialize")
    params = message.get("params")
    options = params.get("initializationOptions") if isinstance(params, dict) else None
    if isinstance(options, dict) and token_matches(options.get("token"), token):
        return body
    error = {"jsonrpc": "2.0", "id": message["id"], "error": {"code": UNAUTHORIZED, "message": TOKEN_REFUSED}}
    writer.write(frame(json.dumps(error).encode("utf-8")))
    raise Disconnect("initialize without the right token")
