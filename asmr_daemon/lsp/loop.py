"""The message loop of one editor connection: frames in, pygls handlers out, within bounds.

A reader task reads frames into a small queue of pending messages; a dispatcher hands them to
pygls in order, running at most ``max_requests_in_flight`` requests at once and none while the
client leaves its answers unread. When the queue is full the connection is not read (TCP
backpressure). ``$/cancelRequest`` skips the queue: a pending request is dropped (answered as
cancelled) and a running one cancelled, so an editor can always take back what it asked.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import Any
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled
from pygls.protocol import LanguageServerProtocol

from asmr_daemon.lsp.connection import Disconnect, GuardedWriter
from asmr_daemon.lsp.framing import FrameError, Limits, read_frame

logger = logging.getLogger(__name__)

# The documents one connection keeps open may total this many times the inbox's file limit.
OPEN_DOCUMENTS_FACTOR = 4
# Requests are small; only a body this small is looked at for its id (cancellation).
_SMALL = 64 * 1024


class Pending:
    """Messages read but not yet dispatched: at most ``count`` of them and about one message's
    worth of bytes."""

    def __init__(self, count: int, max_bytes: int) -> None:
        self._items: deque[tuple[bytes, Any]] = deque()
        self._count, self._max_bytes, self._bytes = count, max_bytes, 0
        self._changed = asyncio.Event()
        self.closed = False
        self.error: FrameError | None = None  # why the reader stopped, after what it had read

    async def put(self, body: bytes, request_id: Any) -> None:
        while self._items and (len(self._items) >= self._count or self._bytes + len(body) > self._max_bytes):
            await self._wait()
        self._items.append((body, request_id))
        self._bytes += len(body)
        self._changed.set()

    async def get(self) -> bytes | None:
        while not self._items:
            if self.closed:
                return None
            await self._wait()
        body, _ = self._items.popleft()
        self._bytes -= len(body)
        self._changed.set()
        return body

    def drop(self, request_id: Any) -> bool:
        for item in self._items:
            if item[1] == request_id:
                self._items.remove(item)
                self._bytes -= len(item[0])
                self._changed.set()
                return True
        return False

    def close(self, error: FrameError | None = None) -> None:
        self.closed, self.error = True, error
        self._changed.set()

    async def _wait(self) -> None:
        self._changed.clear()
        await self._changed.wait()


def _peek(body: bytes) -> tuple[str | None, Any]:
    """(method, id) of a small message; (None, None) for a big one (a document notification)."""
    if len(body) > _SMALL:
        return None, None
    try:
        message = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(message, dict):
        return None, None
    if message.get("method") == "$/cancelRequest" and isinstance(message.get("params"), dict):
        return "$/cancelRequest", message["params"].get("id")
    return message.get("method"), message.get("id")


async def message_loop(reader: asyncio.StreamReader, output: GuardedWriter, protocol: LanguageServerProtocol,
                       limits: Limits, peer: str, first: bytes | None = None) -> None:
    """Serve the connection until the peer closes it (or Disconnect)."""
    pending = Pending(limits.max_requests_in_flight, limits.max_message_bytes)
    if first is not None:
        await pending.put(first, None)
    tasks = [asyncio.ensure_future(_read(reader, protocol, limits, pending)),
             asyncio.ensure_future(_dispatch_all(output, protocol, limits, peer, pending))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        await tasks[1]  # the reader ended cleanly: finish what was read
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _read(reader: asyncio.StreamReader, protocol: LanguageServerProtocol, limits: Limits, pending: Pending) -> None:
    error = None
    try:
        while (body := await read_frame(reader, max_header_bytes=limits.max_header_bytes,
                                        max_body_bytes=limits.max_message_bytes)) is not None:
            method, request_id = _peek(body)
            if method == "$/cancelRequest" and pending.drop(request_id):
                protocol._send_response(request_id, error=JsonRpcRequestCancelled().to_response_error())
            elif method == "$/cancelRequest":
                protocol.handle_message(json.loads(body, object_hook=protocol.structure_message))
            else:
                await pending.put(body, request_id)
    except FrameError as exc:
        error = exc
    finally:
        pending.close(error)


async def _dispatch_all(output: GuardedWriter, protocol: LanguageServerProtocol, limits: Limits, peer: str,
                        pending: Pending) -> None:
    in_flight: set[asyncio.Future[Any]] = set()
    while (body := await pending.get()) is not None:
        while len(in_flight) >= limits.max_requests_in_flight:
            await asyncio.wait(set(in_flight), return_when=asyncio.FIRST_COMPLETED)
        await output.wait_writable()
        future = dispatch(protocol, body, peer, limits)
        if future is not None:
            in_flight.add(future)
            future.add_done_callback(in_flight.discard)
    if pending.error is not None:  # what came before the bad frame was served; now say why we hang up
        protocol.notify(types.WINDOW_SHOW_MESSAGE, types.ShowMessageParams(
            type=types.MessageType.Error, message=f"asmr-daemon closed the connection: {pending.error}"))
        raise Disconnect(str(pending.error))


def dispatch(protocol: LanguageServerProtocol, body: bytes, peer: str, limits: Limits) -> asyncio.Future[Any] | None:
    """Hand one message to pygls; the request's future while it runs, else None."""
    try:
        message = json.loads(body, object_hook=protocol.structure_message)
    except Exception as exc:  # not JSON, or not a message pygls can structure
        logger.warning("editor %s sent an unreadable message: %s", peer, str(exc)[:200])
        return None
    method = getattr(message, "method", None)
    try:
        protocol.handle_message(message)
    except Exception as exc:
        logger.warning("editor %s: %s not handled: %s", peer, method, str(exc)[:200],
                       exc_info=logger.isEnabledFor(logging.DEBUG))
        return None
    if method in (types.TEXT_DOCUMENT_DID_OPEN, types.TEXT_DOCUMENT_DID_CHANGE):
        _limit_documents(protocol, message.params.text_document.uri, limits)
    if method is None or getattr(message, "id", None) is None:
        return None
    future = protocol._request_futures.get(message.id)
    return future if isinstance(future, asyncio.Future) and not future.done() else None


def _limit_documents(protocol: LanguageServerProtocol, uri: str, limits: Limits) -> None:
    """A document over the inbox's size limit (or past the connection's total) is dropped from
    the session, with a message to the user: it is never parsed or translated."""
    documents = protocol.workspace.text_documents
    document = documents.get(unquote(uri))
    if document is None:
        return
    size = _utf8_size(document.source, limits.max_document_bytes)
    total = sum(len(d.source) for d in documents.values())
    if size <= limits.max_document_bytes and total <= OPEN_DOCUMENTS_FACTOR * limits.max_document_bytes:
        return
    protocol.workspace.remove_text_document(uri)
    why = (f"it is over the {limits.max_document_bytes} byte limit ([watch] max_file_bytes)"
           if size > limits.max_document_bytes else "too many large documents are open")
    protocol.notify(types.WINDOW_SHOW_MESSAGE, types.ShowMessageParams(
        type=types.MessageType.Warning, message=f"asmr-daemon ignores {unquote(uri).rsplit('/', 1)[-1]}: {why}"))


def _utf8_size(text: str, limit: int) -> int:
    return len(text) if 4 * len(text) <= limit else len(text.encode("utf-8", "surrogatepass"))
