"""Parsing open documents off the event loop, without one editor's big files delaying another's.

Parsing segments sentences with spaCy: seconds for a 5 MB script. Big documents are parsed in
a pool of their own (one thread), small ones in another, so a hover in a small script never
waits behind eight clients' 5 MB documents. Requests for the same version of a document share
one parse (32 hovers arriving while a big script is parsed do not start 32 parses).
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor

from asmr_daemon.lsp import convert
from asmr_daemon.lsp.convert import ParsedBuffer

BIG_DOCUMENT_CHARS = 64 * 1024
_big = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asmr-parse-big")
_small = ThreadPoolExecutor(max_workers=2, thread_name_prefix="asmr-parse")


class Parser:
    """One session's parses: at most one running per document version."""

    def __init__(self) -> None:
        self._running: dict[tuple[str, int | None, int], asyncio.Future[ParsedBuffer]] = {}

    async def parse(self, uri: str, source: str, *, version: int | None, language_id: str | None) -> ParsedBuffer:
        key = (uri, version, hash(source))
        future = self._running.get(key)
        if future is None:
            pool = _big if len(source) > BIG_DOCUMENT_CHARS else _small
            call = functools.partial(convert.parse_buffer, uri, source, version=version, language_id=language_id)
            future = asyncio.get_running_loop().run_in_executor(pool, call)
            self._running[key] = future
            future.add_done_callback(lambda _: self._running.pop(key, None))
        # shield: one waiter being cancelled (its request was) must not cancel the others' parse
        return await asyncio.shield(future)
