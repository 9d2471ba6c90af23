"""One language-server session per editor connection (pygls 2.x), built by ``build_server``.

The parts: ``protocol`` (JSON-RPC: connection-scoped exit), ``session`` (one
editor's buffers and background work), ``features`` and ``commands`` (module-level handlers
in registration tables), ``convert`` (documents and positions <-> LSP types), ``translate``
(what is asked of the engine). Every handler is a coroutine on the connection's event loop;
waiting for the model is ``await``-ing an engine future, so a ``$/cancelRequest`` (pygls
cancels the task) cancels the engine's future too.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

from asmr_daemon.errors import AsmrError, InputError
from asmr_daemon.lsp.commands import COMMANDS, REQUEST_FAILED
from asmr_daemon.lsp.convert import BadRequest
from asmr_daemon.lsp.features import FEATURES
from asmr_daemon.lsp.session import AsmrLanguageServer
from asmr_daemon.lsp.translate import Translator

logger = logging.getLogger(__name__)


def answering(fn: Callable[..., Any], empty: Any = None) -> Callable[..., Any]:
    """Turn library errors into LSP answers: bad params -> InvalidParams, a script that does
    not parse (mid-edit subtitle file) -> ``empty``, other typed errors -> RequestFailed."""

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


def build_server(
    translator: Translator,
    *,
    on_exit: Callable[[], None] | None = None,
) -> AsmrLanguageServer:
    """A fresh server for one connection (already admitted: ``connection``). ``on_exit``: what
    ``exit`` does (close the connection); None keeps pygls' process exit."""
    ls = AsmrLanguageServer(translator)
    ls.protocol.on_exit = on_exit
    for feature in FEATURES:
        # Notifications that only touch the session stay synchronous (ordered with the next message).
        handler = answering(feature.handler, feature.empty) if inspect.iscoroutinefunction(feature.handler) else feature.handler
        ls.feature(feature.method, feature.options)(handler)
    for name, command in COMMANDS.items():
        ls.command(name)(answering(command))
    return ls
