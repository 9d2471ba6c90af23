"""``workspace/executeCommand`` commands, one module-level handler each, and ``COMMANDS``: the
table ``build_server`` registers. Names are the contract with the CLI and the editor plugins."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import dataclasses
import functools
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from asmr_daemon.errors import InputError
from asmr_daemon.lsp import convert
from asmr_daemon.lsp.convert import BadRequest, ParsedBuffer
from asmr_daemon.lsp.session import AsmrLanguageServer
from asmr_daemon.lsp.translate import Shown
from asmr_daemon.scripts import output_name

TRANSLATE_DOCUMENT = "asmr.translateDocument"
USE_ADAPTER = "asmr.useAdapter"
TRANSLATE_FILE = "asmr.translateFile"
REQUEST_FAILED = -32803  # LSP's RequestFailed
USE_ADAPTER_REFUSED = (f"{USE_ADAPTER} is accepted only over the daemon's Unix socket: run "
                       "`asmr-daemon use-adapter DIR` on the daemon's machine")
TRANSLATE_FILE_USAGE = (f"{TRANSLATE_FILE} takes {{\"name\": \"notes.txt\", \"content\": BASE64}} or an open "
                        "document's uri, and optionally {\"bilingual\": true}; it reads and writes no paths")


async def translate_document(ls: AsmrLanguageServer, *args: Any) -> dict[str, Any]:
    """Translate an open buffer (with $/progress) and apply the result as one edit."""
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


async def translate_file(ls: AsmrLanguageServer, *args: Any) -> dict[str, Any]:
    """``asmr-daemon translate`` through the running daemon: the script's bytes in, the output's
    bytes out (the same code path as a file dropped into the inbox, with the daemon's model).
    Arguments: ``{"name", "content"(base64), "glossary"?}`` or the uri of a document open in
    this session, then optionally ``{"bilingual": true}``. The daemon reads and writes no path a
    client names; the caller writes the output itself."""
    if len(args) not in (1, 2) or len(args) == 2 and not isinstance(args[1], dict):
        raise BadRequest(TRANSLATE_FILE_USAGE)
    name, data, glossary = await _script_argument(ls, args[0])
    options = args[1] if len(args) == 2 else {}
    try:
        rendered = await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(ls.translator.file_bytes, name, data, glossary=glossary,
                                    bilingual=bool(options.get("bilingual", False))))
    except (InputError, OSError) as exc:  # the caller asked for this file: say why it failed
        message = exc.message if isinstance(exc, InputError) else f"{name}: {exc.strerror or exc}"
        raise JsonRpcException(message=message, code=REQUEST_FAILED) from None
    return {"name": output_name(name), "content": base64.b64encode(rendered.data).decode("ascii"),
            "flags": [dataclasses.asdict(flag) for flag in rendered.flags]}


async def _script_argument(ls: AsmrLanguageServer, given: Any) -> tuple[str, bytes, str | None]:
    """(file name, bytes, glossary text) from a ``{"name", "content"}`` object or an open document."""
    if isinstance(given, str):  # an open document: its text, as the editor has it
        document = ls.workspace.text_documents.get(unquote(given))
        if document is None:
            raise BadRequest(f"{TRANSLATE_FILE}: that document is not open in this session")
        return _file_name(PurePosixPath(convert.uri_path(given)).name), document.source.encode("utf-8"), None
    if not isinstance(given, dict) or not isinstance(given.get("content"), str):
        raise BadRequest(TRANSLATE_FILE_USAGE)
    glossary = given.get("glossary")
    try:
        data = base64.b64decode(given["content"], validate=True)
    except ValueError:
        raise BadRequest(f"{TRANSLATE_FILE}: content is not base64") from None
    return _file_name(given.get("name")), data, glossary if isinstance(glossary, str) else None


def _file_name(name: Any) -> str:
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\0" in name \
            or len(name.encode("utf-8", "surrogateescape")) > 200:
        raise BadRequest(f"{TRANSLATE_FILE}: name must be a plain file name such as notes.txt")
    return name


async def use_adapter(ls: AsmrLanguageServer, *args: Any) -> dict[str, Any]:
    """Switch the shared model's adapter: prepared off the event loop, then swapped in.

    Only over the Unix socket (this user's own processes: ``asmr-daemon use-adapter``, the
    bridge): a TCP client, even with the token, may be on another machine, and an adapter
    directory is a path on this one -- switching every editor's and the inbox's model to it,
    or probing which paths exist, is more power than an editor needs."""
    if ls.transport == "tcp":
        raise JsonRpcException(message=USE_ADAPTER_REFUSED, code=REQUEST_FAILED)
    if len(args) != 1 or not isinstance(args[0], str) or not args[0].strip():
        raise BadRequest(f"{USE_ADAPTER} takes one argument: the adapter directory (an absolute path)")
    path = Path(args[0]).expanduser()
    if not path.is_absolute():
        raise BadRequest(f"{USE_ADAPTER}: {args[0]!r} is relative; send an absolute path (the daemon has its own working directory)")
    identity = await asyncio.get_running_loop().run_in_executor(None, ls.translator.switch_adapter, path)
    return {"adapter": str(path), "identity": identity}


COMMANDS: dict[str, Callable[..., Any]] = {
    TRANSLATE_DOCUMENT: translate_document,
    USE_ADAPTER: use_adapter,
    TRANSLATE_FILE: translate_file,
}


class _Progress:
    """``$/progress`` for one long command when the client supports it; the user's cancel sets
    ``cancel``, which the translation polls."""

    def __init__(self, ls: AsmrLanguageServer, title: str) -> None:
        self.ls, self.title = ls, title
        self.cancel = threading.Event()
        self.token = f"asmr-translate-{uuid.uuid4()}" if ls.client_supports_progress() else None

    async def begin(self) -> None:
        if self.token is None:
            return
        await self.ls.work_done_progress.create_async(self.token)
        self.ls.work_done_progress.tokens[self.token].add_done_callback(self._cancelled)
        self.ls.work_done_progress.begin(
            self.token, types.WorkDoneProgressBegin(title=self.title, cancellable=True, percentage=0)
        )

    def _cancelled(self, future: Future) -> None:
        if future.cancelled():
            self.cancel.set()

    def report(self, done: int, total: int) -> None:
        if self.token is not None and not self.cancel.is_set():
            percentage = int(100 * done / total) if total else 100
            self.ls.work_done_progress.report(
                self.token, types.WorkDoneProgressReport(message=f"{done}/{total} lines", percentage=percentage))

    def end(self, message: str) -> None:
        if self.token is not None:
            self.ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))

    def release(self) -> None:
        if self.token is not None:
            self.ls.work_done_progress.tokens.pop(self.token, None)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: object) -> None:
    loop.call_soon_threadsafe(callback, *args)


async def _translate_whole(ls: AsmrLanguageServer, buffer: ParsedBuffer, layout: str) -> dict[str, Any]:
    """Translate the buffer with $/progress, then apply one edit with the result."""
    loop = asyncio.get_running_loop()
    name = Path(convert.uri_path(buffer.uri)).name or buffer.uri
    progress = _Progress(ls, f"Translating {name}")
    await progress.begin()
    run = functools.partial(ls.translator.document, buffer.doc, ls.path_of(buffer),
                            progress=functools.partial(_call_soon, loop, progress.report), cancel=progress.cancel)
    try:
        shown = await loop.run_in_executor(None, run)
    except (asyncio.CancelledError, concurrent.futures.CancelledError):
        progress.cancel.set()
        progress.end("cancelled")
        task = asyncio.current_task()
        if task is not None and task.cancelling():  # the request itself was cancelled
            raise
        return {"applied": False, "cancelled": True, "translated": 0}
    except BaseException:
        progress.end("failed")
        raise
    finally:
        progress.release()
    progress.end(f"{len(shown)} lines translated")
    ls.refresh_diagnostics(buffer.uri)  # the flagged lines are known now
    return await _apply(ls, buffer, layout, shown, name)


async def _apply(ls: AsmrLanguageServer, buffer: ParsedBuffer, layout: str, shown: dict[int, Shown],
                 name: str) -> dict[str, Any]:
    """One edit replacing the buffer -- unless the user changed it meanwhile (then a warning)."""
    current = ls.workspace.text_documents.get(unquote(buffer.uri))
    if current is None or current.source != buffer.text:
        ls.window_show_message(
            types.ShowMessageParams(type=types.MessageType.Warning, message=f"{name} changed while it was translated; run the command again (it is quick now)")
        )
        return {"applied": False, "cancelled": False, "translated": len(shown)}
    texts = {index: s.text for index, s in shown.items()}
    lines = convert.bilingual_lines(buffer.doc, texts) if layout == "bilingual" else convert.replaced_lines(buffer.doc, texts)
    edit = types.TextEdit(range=convert.whole_buffer_range(buffer.text, ls.codec), new_text=convert.join_lines(buffer.doc, lines))
    result = await ls.workspace_apply_edit_async(
        types.ApplyWorkspaceEditParams(edit=convert.workspace_edit(buffer.uri, [edit]), label="Translate document")
    )
    return {"applied": bool(result.applied), "cancelled": False, "translated": len(shown)}
