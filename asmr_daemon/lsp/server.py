"""One language-server session per editor connection (pygls 2.x), built by ``build_server``.

Handlers are thin: find the buffer, convert positions (``convert``), ask the ``Translator``,
return LSP types. Every handler is a coroutine on the connection's event loop; waiting for the
model is ``await``-ing an engine future, so a ``$/cancelRequest`` (pygls cancels the task)
cancels the engine's future too.

Two pygls defaults are replaced in ``AsmrProtocol``:

* ``exit`` calls ``sys.exit`` in pygls -- in the daemon that would take every other editor and
  the watch folder down with one client. Here ``exit`` only closes this connection.
* with a token (non-loopback TCP) ``initialize`` must carry ``initializationOptions.token``;
  anything else gets an error response and the connection is closed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hmac
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInvalidParams,
    JsonRpcServerNotInitialized,
)
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

from asmr_daemon import __version__
from asmr_daemon.errors import AsmrError, InputError
from asmr_daemon.lsp import convert
from asmr_daemon.lsp.convert import BadRequest, ParsedBuffer
from asmr_daemon.lsp.translate import Shown, Translator

logger = logging.getLogger(__name__)

TRANSLATE_DOCUMENT = "asmr.translateDocument"
USE_ADAPTER = "asmr.useAdapter"
TRANSLATE_FILE = "asmr.translateFile"
UNAUTHORIZED = -32001
REQUEST_FAILED = -32803  # LSP's RequestFailed
# An inlay-hint request for a huge range must not queue the whole file at interactive priority.
MAX_PREFETCH_LINES = 64


@dataclass(frozen=True)
class _Unreadable:
    """A request that could not be deserialized: answered with InvalidParams."""

    id: Any
    error: Exception


TOKEN_REFUSED = "asmr-daemon: this address needs a token: set initializationOptions.token to [lsp] token"


class AsmrProtocol(LanguageServerProtocol):
    """pygls' protocol with a connection-scoped ``exit`` and an optional token check."""

    required_token: str | None = None
    on_exit: Callable[[], None] | None = None

    def __init__(self, server: Any, converter: Any) -> None:
        super().__init__(server, converter)
        self._authorized = False

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            # pygls drops a request whose params do not fit the method's type, leaving the
            # client waiting forever; answer it instead (InvalidParams).
            if isinstance(data, dict) and "id" in data and "method" in data:
                return _Unreadable(id=data["id"], error=exc)
            raise

    def handle_message(self, message: Any) -> None:
        if isinstance(message, _Unreadable):
            self._send_response(message.id, error=JsonRpcInvalidParams(message=f"invalid params: {message.error.__cause__ or message.error}").to_response_error())
            return
        if self.required_token is not None and not self._authorized:
            method = getattr(message, "method", None)
            if method == types.INITIALIZE and self._token_ok(message.params):
                self._authorized = True
            else:
                # An unauthenticated peer gets one error answer and the connection is closed; the
                # check lives here (not in the initialize handler) so a port scan costs one log
                # line, not a traceback per attempt.
                if getattr(message, "id", None) is not None and method is not None:
                    error = (JsonRpcException(message=TOKEN_REFUSED, code=UNAUTHORIZED) if method == types.INITIALIZE
                             else JsonRpcServerNotInitialized())
                    self._send_response(message.id, error=error.to_response_error())
                logger.warning("refused a connection without the right token")
                self._close()
                return
        super().handle_message(message)

    def _token_ok(self, params: Any) -> bool:
        options = getattr(params, "initialization_options", None)
        given = options.get("token") if isinstance(options, dict) else None
        return isinstance(given, str) and hmac.compare_digest(given.encode(), (self.required_token or "").encode())

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args: Any):  # type: ignore[override]
        if self.on_exit is None:  # stdio: the process is this one client, pygls may exit it
            yield from super().lsp_exit(*args)
            return
        self.on_exit()

    def _close(self) -> None:
        if self.on_exit is not None:
            self.on_exit()
        elif self.writer is not None:
            self.writer.close()


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
        self.inlay_hints_enabled = True

    # -- buffers ---------------------------------------------------------------------------

    @property
    def encoding(self) -> Any:
        return self.workspace.position_encoding

    async def buffer(self, uri: str) -> ParsedBuffer:
        """The open buffer ``uri``, parsed (cached per version). BadRequest if it is not open."""
        convert.uri_path(uri)
        document = self.workspace.text_documents.get(unquote(uri))
        if document is None:
            raise BadRequest(f"document is not open: {uri}")
        cached = self._parsed.get(uri)
        if cached is not None and cached.version == document.version and cached.text == document.source:
            return cached
        # Parsing segments sentences with spaCy: keep it off the event loop other editors share.
        parsed = await asyncio.get_running_loop().run_in_executor(
            None,
            functools.partial(
                convert.parse_buffer, uri, document.source, version=document.version, language_id=document.language_id
            ),
        )
        self._parsed[uri] = parsed
        return parsed

    def forget(self, uri: str) -> None:
        self._parsed.pop(uri, None)

    def path_of(self, buffer: ParsedBuffer) -> Path | None:
        return Path(convert.uri_path(buffer.uri)) if buffer.uri.startswith("file:") else None

    # -- translations ----------------------------------------------------------------------

    async def translation(self, buffer: ParsedBuffer, index: int) -> Shown:
        """The translation of one line: from memory, else from the model (interactive)."""
        if (shown := self.translator.cached(buffer.doc, index, self.path_of(buffer))) is not None:
            return shown
        return await asyncio.wrap_future(self.translator.line(buffer.doc, index, self.path_of(buffer)))

    async def translations(self, buffer: ParsedBuffer, indices: list[int]) -> dict[int, Shown]:
        results = await asyncio.gather(*(self.translation(buffer, i) for i in indices))
        return dict(zip(indices, results, strict=True))

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
            self.spawn(self._refresh_after(futures))

    async def _refresh_after(self, futures: list[Future]) -> None:
        results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures), return_exceptions=True)
        if any(not isinstance(r, BaseException) for r in results) and self._client_can_refresh_hints():
            await self.workspace_inlay_hint_refresh_async(None)

    def _client_can_refresh_hints(self) -> bool:
        workspace = self.client_capabilities.workspace
        return bool(workspace and workspace.inlay_hint and workspace.inlay_hint.refresh_support)

    def client_supports_progress(self) -> bool:
        window = self.client_capabilities.window
        return bool(window and window.work_done_progress)

    def spawn(self, coro: Any) -> None:
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


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: object) -> None:
    loop.call_soon_threadsafe(callback, *args)


def _forget(pending: dict, key: object, _future: Future) -> None:
    pending.pop(key, None)


def _handler(empty: Any = None) -> Callable:
    """Turn library errors into LSP answers: bad params -> InvalidParams, a script that does
    not parse (mid-edit subtitle file) -> ``empty``, other typed errors -> RequestFailed."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        async def wrapper(ls: AsmrLanguageServer, *args: Any) -> Any:
            try:
                return await fn(ls, *args)
            except BadRequest as exc:
                raise JsonRpcInvalidParams(message=str(exc)) from None
            except InputError as exc:
                logger.info("%s: %s", fn.__name__, exc)
                return empty
            except AsmrError as exc:
                raise JsonRpcException(message=str(exc), code=REQUEST_FAILED) from None

        return wrapper

    return decorate


def build_server(
    translator: Translator,
    *,
    token: str | None = None,
    on_exit: Callable[[], None] | None = None,
) -> AsmrLanguageServer:
    """A fresh server for one connection. ``token``: required ``initializationOptions.token``.
    ``on_exit``: what ``exit`` does (close the connection); None keeps pygls' process exit."""
    ls = AsmrLanguageServer(translator)
    ls.protocol.required_token = token or None
    ls.protocol.on_exit = on_exit
    _register_features(ls)
    return ls


def _register_features(server: AsmrLanguageServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: AsmrLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.forget(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    @_handler(None)
    async def hover(ls: AsmrLanguageServer, params: types.HoverParams) -> types.Hover | None:
        buffer = await ls.buffer(params.text_document.uri)
        line = convert.checked_line(buffer, params.position)
        if line is None or not convert.is_source_line(buffer.doc, line.index):
            return None
        shown = await ls.translation(buffer, line.index)
        return types.Hover(
            contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=convert.hover_markdown(shown.text, shown.problems)),
            range=convert.line_range(line, ls.encoding),
        )

    @server.feature(types.TEXT_DOCUMENT_INLAY_HINT, types.InlayHintOptions(resolve_provider=False))
    @_handler([])
    async def inlay_hints(ls: AsmrLanguageServer, params: types.InlayHintParams) -> list[types.InlayHint]:
        buffer = await ls.buffer(params.text_document.uri)
        hints, missing = [], []
        for line in convert.lines_in_range(buffer, params.range):
            if not convert.is_source_line(buffer.doc, line.index):
                continue
            shown = ls.translator.cached(buffer.doc, line.index, ls.path_of(buffer))
            if shown is None:
                missing.append(line.index)
                continue
            hints.append(
                types.InlayHint(
                    position=convert.end_of_line(line, ls.encoding),
                    label=shown.text + (" ⚠" if shown.problems else ""),
                    padding_left=True,
                    tooltip="; ".join(shown.problems) or None,
                )
            )
        if missing:
            ls.prefetch(buffer, missing)
        return hints

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.RefactorRewrite]),
    )
    @_handler(None)
    async def code_actions(ls: AsmrLanguageServer, params: types.CodeActionParams) -> list[types.CodeAction] | None:
        only = params.context.only
        if only and not any(str(getattr(k, "value", k)) in ("refactor", "refactor.rewrite") for k in only):
            return None
        buffer = await ls.buffer(params.text_document.uri)
        lines = [l for l in convert.lines_in_range(buffer, params.range) if convert.is_source_line(buffer.doc, l.index)]
        if not lines:
            return None
        shown = await ls.translations(buffer, [l.index for l in lines])
        uri, nl, enc = buffer.uri, buffer.doc.newline, ls.encoding
        insert = [convert.insert_below_edit(l, shown[l.index].text, nl, enc) for l in lines]
        replace = [convert.replace_edit(l, shown[l.index].text, enc) for l in lines]
        kind = types.CodeActionKind.RefactorRewrite
        return [
            types.CodeAction(title="Insert translation below", kind=kind, edit=convert.workspace_edit(uri, insert)),
            types.CodeAction(title="Replace with translation", kind=kind, edit=convert.workspace_edit(uri, replace)),
        ]

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[]))
    @_handler(None)
    async def completion(ls: AsmrLanguageServer, params: types.CompletionParams) -> types.CompletionList | None:
        buffer = await ls.buffer(params.text_document.uri)
        convert.checked_line(buffer, params.position)
        row = params.position.line
        current = buffer.line(row).raw if row < buffer.line_count else ""
        if row == 0 or current.strip() or not convert.is_source_line(buffer.doc, row - 1):
            return None
        above = buffer.line(row - 1)
        shown = await ls.translation(buffer, above.index)
        new_text = convert.translation_line_text(above, shown.text)
        end = types.Position(line=row, character=convert.units(current, ls.encoding))
        item = types.CompletionItem(
            label=shown.text,
            kind=types.CompletionItemKind.Text,
            detail=f"translation of line {row}",
            filter_text=current,
            text_edit=types.TextEdit(range=types.Range(start=types.Position(line=row, character=0), end=end), new_text=new_text),
        )
        return types.CompletionList(is_incomplete=False, items=[item])

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
    @_handler(None)
    async def did_save(ls: AsmrLanguageServer, params: types.DidSaveTextDocumentParams) -> None:
        buffer = await ls.buffer(params.text_document.uri)
        pairs = [
            (ja, zh)
            for ja, zh in convert.bilingual_pairs(buffer.doc)
            if (model := ls.translator.cached(buffer.doc, ja.index, ls.path_of(buffer))) is None or model.text != zh.body
        ]
        if pairs:
            loop = asyncio.get_running_loop()
            for ja, zh in pairs:  # SQLite writes: off the event loop
                await loop.run_in_executor(None, ls.translator.record, buffer.doc, ja.index, zh.body)

    @server.command(TRANSLATE_DOCUMENT)
    @_handler(None)
    async def translate_document(ls: AsmrLanguageServer, *args: Any) -> dict[str, Any]:
        if not args or not isinstance(args[0], str):
            raise BadRequest(f"{TRANSLATE_DOCUMENT} takes the document uri (and optionally \"bilingual\" or \"replace\")")
        layout = args[1] if len(args) > 1 else "bilingual"
        if layout not in ("bilingual", "replace"):
            raise BadRequest(f"unknown layout {layout!r}: use \"bilingual\" or \"replace\"")
        try:
            buffer = await ls.buffer(args[0])
        except InputError as exc:  # the user asked for it: say why, do not answer with silence
            raise JsonRpcException(message=str(exc), code=REQUEST_FAILED) from None
        return await _translate_whole(ls, buffer, layout)

    @server.command(USE_ADAPTER)
    @_handler(None)
    async def use_adapter(ls: AsmrLanguageServer, *args: Any) -> dict[str, Any]:
        return await _use_adapter(ls, args)

    @server.command(TRANSLATE_FILE)
    @_handler(None)
    async def translate_file(ls: AsmrLanguageServer, *args: Any) -> dict[str, Any]:
        return await _translate_file(ls, args)


async def _translate_file(ls: AsmrLanguageServer, args: tuple[Any, ...]) -> dict[str, Any]:
    """``asmr-daemon translate`` through the running daemon: the same code path as a file dropped
    into the inbox (the daemon reads ``src`` and writes ``dest`` atomically), with its model."""
    if len(args) not in (2, 3) or not all(isinstance(a, str) and Path(a).is_absolute() for a in args[:2]):
        raise BadRequest(f"{TRANSLATE_FILE} takes the absolute source and destination paths "
                         "(and optionally {\"bilingual\": true})")
    options = args[2] if len(args) == 3 and isinstance(args[2], dict) else {}
    try:
        dest = await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(ls.translator.file, Path(args[0]), Path(args[1]),
                                    bilingual=bool(options.get("bilingual", False))))
    except (InputError, OSError) as exc:  # the caller asked for this file: say why it failed
        raise JsonRpcException(message=str(exc), code=REQUEST_FAILED) from None
    return {"output": str(dest)}


async def _use_adapter(ls: AsmrLanguageServer, args: tuple[Any, ...]) -> dict[str, Any]:
    """Switch the shared model's adapter: prepared off the event loop, then swapped in."""
    if len(args) != 1 or not isinstance(args[0], str) or not args[0].strip():
        raise BadRequest(f"{USE_ADAPTER} takes one argument: the adapter directory (an absolute path)")
    path = Path(args[0]).expanduser()
    if not path.is_absolute():
        raise BadRequest(f"{USE_ADAPTER}: {args[0]!r} is relative; send an absolute path (the daemon has its own working directory)")
    identity = await asyncio.get_running_loop().run_in_executor(None, ls.translator.switch_adapter, path)
    return {"adapter": str(path), "identity": identity}


async def _translate_whole(ls: AsmrLanguageServer, buffer: ParsedBuffer, layout: str) -> dict[str, Any]:
    """Translate the buffer with $/progress, then apply one edit with the result."""
    loop = asyncio.get_running_loop()
    cancel = threading.Event()
    token = f"asmr-translate-{uuid.uuid4()}" if ls.client_supports_progress() else None
    name = Path(convert.uri_path(buffer.uri)).name or buffer.uri
    if token is not None:
        await ls.work_done_progress.create_async(token)
        ls.work_done_progress.tokens[token].add_done_callback(lambda f: cancel.set() if f.cancelled() else None)
        ls.work_done_progress.begin(
            token, types.WorkDoneProgressBegin(title=f"Translating {name}", cancellable=True, percentage=0)
        )

    def report(done: int, total: int) -> None:
        if token is not None and not cancel.is_set():
            percentage = int(100 * done / total) if total else 100
            ls.work_done_progress.report(token, types.WorkDoneProgressReport(message=f"{done}/{total} lines", percentage=percentage))

    def end(message: str) -> None:
        if token is not None:
            ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))

    run = functools.partial(
        ls.translator.document,
        buffer.doc,
        ls.path_of(buffer),
        progress=functools.partial(_call_soon, loop, report),
        cancel=cancel,
    )
    try:
        shown = await loop.run_in_executor(None, run)
    except (asyncio.CancelledError, concurrent.futures.CancelledError):
        cancel.set()
        end("cancelled")
        task = asyncio.current_task()
        if task is not None and task.cancelling():  # the request itself was cancelled
            raise
        return {"applied": False, "cancelled": True, "translated": 0}
    except BaseException:
        end("failed")
        raise
    finally:
        if token is not None:
            ls.work_done_progress.tokens.pop(token, None)
    end(f"{len(shown)} lines translated")

    current = ls.workspace.text_documents.get(unquote(buffer.uri))
    if current is None or current.source != buffer.text:
        ls.window_show_message(
            types.ShowMessageParams(type=types.MessageType.Warning, message=f"{name} changed while it was translated; run the command again (it is quick now)")
        )
        return {"applied": False, "cancelled": False, "translated": len(shown)}
    texts = {index: s.text for index, s in shown.items()}
    lines = convert.bilingual_lines(buffer.doc, texts) if layout == "bilingual" else convert.replaced_lines(buffer.doc, texts)
    edit = types.TextEdit(range=convert.whole_buffer_range(buffer.text, ls.encoding), new_text=convert.join_lines(buffer.doc, lines))
    result = await ls.workspace_apply_edit_async(
        types.ApplyWorkspaceEditParams(edit=convert.workspace_edit(buffer.uri, [edit]), label="Translate document")
    )
    return {"applied": bool(result.applied), "cancelled": False, "translated": len(shown)}
