"""One editor's session: its open buffers (parsed once per version), its background work, and
the shared ``Translator``. Handlers (``features``, ``commands``) get this object as ``ls``."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from pygls.lsp.server import LanguageServer
from pygls.workspace.position_codec import PositionCodec

from asmr_daemon import __version__
from asmr_daemon.lsp import convert
from asmr_daemon.lsp.convert import BadRequest, ParsedBuffer
from asmr_daemon.lsp.parsing import Parser
from asmr_daemon.lsp.protocol import AsmrProtocol
from asmr_daemon.lsp.translate import Shown, Translator

# An inlay-hint request for a huge range must not queue the whole file at interactive priority.
MAX_PREFETCH_LINES = 64
# A request for many lines lets other editors' requests run this often (lines).
YIELD_EVERY = 16


class AsmrLanguageServer(LanguageServer):
    """One editor's session: its open buffers, its background work; the translator is shared."""

    translator: Translator

    def __init__(self, translator: Translator) -> None:
        super().__init__("asmr-daemon", __version__, protocol_cls=AsmrProtocol)
        self.translator = translator
        self.protocol: AsmrProtocol
        self._parsed: dict[str, ParsedBuffer] = {}
        self._prefetching: dict[tuple[str, int, str], Future] = {}
        self._background: set[asyncio.Future] = set()
        self._diagnosing: dict[str, asyncio.Future] = {}
        self.parser = Parser()
        # How this editor reached us: "socket" (this user, checked), "tcp" (with the token) or
        # "stdio" (the process is the editor's own). Commands with more power check it.
        self.transport = "stdio"

    # -- buffers ---------------------------------------------------------------------------

    @property
    def codec(self) -> PositionCodec:
        """pygls' converter for the position encoding negotiated with this client."""
        return self.workspace.position_codec

    async def buffer(self, uri: str) -> ParsedBuffer:
        """The open buffer ``uri``, parsed (cached per version). BadRequest if it is not open."""
        convert.uri_path(uri)
        document = self.workspace.text_documents.get(unquote(uri))
        if document is None:
            raise BadRequest(f"document is not open: {uri}")
        cached = self._parsed.get(uri)
        if cached is not None and cached.version == document.version and cached.text == document.source:
            return cached
        # Off the event loop other editors share, in the pool for its size (``parsing``).
        parsed = await self.parser.parse(uri, document.source, version=document.version, language_id=document.language_id)
        self._parsed[uri] = parsed
        return parsed

    def forget(self, uri: str) -> None:
        self._parsed.pop(uri, None)
        if (pending := self._diagnosing.pop(uri, None)) is not None:
            pending.cancel()

    def refresh_diagnostics(self, uri: str) -> None:
        """Publish the buffer's flagged lines (``diagnostics``) soon; a newer call supersedes this one."""
        from asmr_daemon.lsp.diagnostics import publish_later

        if (pending := self._diagnosing.pop(uri, None)) is not None:
            pending.cancel()
        task = asyncio.ensure_future(publish_later(self, uri))
        self._diagnosing[uri] = task
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def path_of(self, buffer: ParsedBuffer) -> Path | None:
        return Path(convert.uri_path(buffer.uri)) if buffer.uri.startswith("file:") else None

    # -- translations ----------------------------------------------------------------------

    def _start(self, buffer: ParsedBuffer, index: int, path: Path | None) -> Shown | Future:
        """A line's translation from memory, else its (interactive) request to the model."""
        if (shown := self.translator.cached(buffer.doc, index, path)) is not None:
            return shown
        return self.translator.line(buffer.doc, index, path)

    async def translation(self, buffer: ParsedBuffer, index: int) -> Shown:
        """The translation of one line: from memory, else from the model (interactive)."""
        started = self._start(buffer, index, self.path_of(buffer))
        if isinstance(started, Shown):
            return started
        translated: Shown = await asyncio.wrap_future(started)
        if translated.problems:
            self.refresh_diagnostics(buffer.uri)
        return translated

    async def translations(self, buffer: ParsedBuffer, indices: list[int]) -> dict[int, Shown]:
        """Many lines: all requested before any is awaited (so they share batches), yielding to
        other editors' requests every ``YIELD_EVERY`` lines -- the event loop is shared."""
        path, started = self.path_of(buffer), []
        for n, index in enumerate(indices, 1):
            started.append(self._start(buffer, index, path))
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        results: list[Shown] = await asyncio.gather(*(asyncio.wrap_future(s) for s in started if not isinstance(s, Shown)))
        if any(shown.problems for shown in results):
            self.refresh_diagnostics(buffer.uri)
        answers = iter(results)
        return {index: s if isinstance(s, Shown) else next(answers) for index, s in zip(indices, started, strict=True)}

    def prefetch(self, buffer: ParsedBuffer, indices: list[int]) -> None:
        """Translate lines in the background; ask the client to re-request hints when done."""
        futures = []
        for index in indices[:MAX_PREFETCH_LINES]:
            key = (buffer.uri, index, buffer.line(index).body)
            if key in self._prefetching:
                continue
            future = self.translator.line(buffer.doc, index, self.path_of(buffer))
            self._prefetching[key] = future
            future.add_done_callback(functools.partial(_forget, self._prefetching, key))
            futures.append(future)
        if futures:
            self.spawn(self._refresh_after(futures, buffer.uri))

    async def _refresh_after(self, futures: list[Future], futures_uri: str) -> None:
        results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures), return_exceptions=True)
        if any(getattr(r, "problems", None) for r in results):
            self.refresh_diagnostics(futures_uri)
        if any(not isinstance(r, BaseException) for r in results) and self._client_can_refresh_hints():
            await self.workspace_inlay_hint_refresh_async(None)

    def _client_can_refresh_hints(self) -> bool:
        workspace = self.client_capabilities.workspace
        return bool(workspace and workspace.inlay_hint and workspace.inlay_hint.refresh_support)

    def client_supports_progress(self) -> bool:
        window = self.client_capabilities.window
        return bool(window and window.work_done_progress)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def close_session(self) -> None:
        """The connection is gone: stop everything it started (engine work included)."""
        for future in list(self._prefetching.values()):
            future.cancel()
        for task in list(self._background):
            task.cancel()
        for future in list(self.protocol._request_futures.values()):
            future.cancel()


def _forget(pending: dict, key: object, _future: Future) -> None:
    pending.pop(key, None)
