"""Reading language-server frames (``Content-Length`` + JSON body) with hard bounds.

pygls' own reader takes any ``Content-Length`` and any header lines, so an HTTP request (what a
web page can send to ``127.0.0.1``) is a valid frame to it, and ``Content-Length:
99999999999999`` makes it buffer without end. Here every header line and the body have a cap,
only the two header names LSP defines are accepted, and anything else ends the connection.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from asmr_daemon.config import Settings

_HEADER = re.compile(rb"(?i)(content-length|content-type): *([^\r\n]*)\r\n")
# Most headers an editor sends (Content-Length and Content-Type); more is not LSP.
_MAX_HEADER_LINES = 4
PRE_AUTH_BODY_BYTES = 64 * 1024
"""The first frame of a TCP connection (``initialize``) may be at most this big."""


class FrameError(Exception):
    """The peer does not speak LSP framing within the limits; the connection is closed."""


@dataclass(frozen=True)
class Limits:
    """Per-connection bounds (``[lsp]`` settings; 0 in the file means derived from the inbox)."""

    max_header_bytes: int = 4096
    max_message_bytes: int = 21_000_000
    max_requests_in_flight: int = 32
    max_output_bytes: int = 42_000_000
    max_document_bytes: int = 5_000_000
    engine_window: int = 32
    """Engine requests one connection may have queued at once (fair share of the model)."""
    stall_seconds: float = 30.0
    """A client whose unread responses fill the socket buffer this long is disconnected."""
    auth_seconds: float = 10.0
    """Time a TCP peer has to send its ``initialize``."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        lsp, document = settings.lsp, settings.watch.max_file_bytes
        # A document travels as a JSON string: non-ASCII may be escaped (\\uXXXX: 6 bytes per
        # 3-byte UTF-8 character), so 4x the inbox's file limit plus room for the envelope.
        message = lsp.max_message_bytes or 4 * document + 1_000_000
        return cls(
            max_header_bytes=max(256, lsp.max_header_bytes),
            max_message_bytes=message,
            max_requests_in_flight=max(1, lsp.max_requests_in_flight),
            max_output_bytes=lsp.max_output_bytes or 2 * message,
            max_document_bytes=document,
            engine_window=max(1, settings.engine.batch_size),
        )


async def read_frame(reader: asyncio.StreamReader, *, max_header_bytes: int, max_body_bytes: int) -> bytes | None:
    """The next message body; None at a clean end of stream (between frames).

    Raises FrameError for anything that is not an LSP header, a header over ``max_header_bytes``
    (in all), a body over ``max_body_bytes`` (before reading it), or a stream cut mid-frame.
    """
    length: int | None = None
    used = 0
    for count in range(_MAX_HEADER_LINES + 1):
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial and count == 0:
                return None
            raise FrameError("the connection ended inside a message header") from None
        except asyncio.LimitOverrunError:
            raise FrameError("a header line is too long") from None
        used += len(line)
        if used > max_header_bytes:
            raise FrameError("the message header is too long")
        if line == b"\r\n" and length is not None:
            return await _body(reader, length, max_body_bytes)
        if count == _MAX_HEADER_LINES:
            break
        match = _HEADER.fullmatch(line)
        if match is None:
            raise FrameError("not a language-server message header (HTTP or garbage)")
        if match.group(1).lower() == b"content-length":
            if not match.group(2).strip().isdigit():
                raise FrameError("Content-Length is not a number")
            length = int(match.group(2))
    raise FrameError("too many header lines")


async def _body(reader: asyncio.StreamReader, length: int, max_body_bytes: int) -> bytes:
    if length > max_body_bytes:
        raise FrameError(f"a message of {length} bytes is over the limit of {max_body_bytes}")
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise FrameError("the connection ended inside a message body") from None


def frame(body: bytes) -> bytes:
    """``body`` with its LSP header."""
    return b"Content-Length: %d\r\n\r\n" % len(body) + body
