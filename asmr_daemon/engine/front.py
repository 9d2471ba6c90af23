"""The translation memory in front of the model: keys, lookups (corrections first) and storing
model outputs. Any thread may look up; the worker stores."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from asmr_daemon.config import DecodingSettings
from asmr_daemon.engine.memory import TranslationMemory, context_key, translation_key
from asmr_daemon.engine.prompts import ContextLine, GlossaryEntry
from asmr_daemon.engine.requests import Request, Translation

log = logging.getLogger(__name__)


class MemoryFront:
    def __init__(self, memory: TranslationMemory, *, template: str, decoding: DecodingSettings) -> None:
        self.memory = memory
        self.template = template
        self.decoding = decoding

    def key(self, source: str, context: Sequence[ContextLine], glossary: Sequence[GlossaryEntry],
            identity: str) -> str:
        return translation_key(source, context=context, glossary=glossary, identity=identity,
                               template=self.template, decoding=self.decoding)

    def known(self, source: str, context: tuple[ContextLine, ...],
              glossary: tuple[GlossaryEntry, ...], identity: str) -> Translation | None:
        """A correction (this context, then context-free) beats a stored model output."""
        for ctx in dict.fromkeys((context_key(context), "")):
            target = self.memory.correction_for(source, ctx)
            if target is not None:
                return Translation(source=source, text=target, problem=None, origin="correction")
        hit = self.memory.get(self.key(source, context, glossary, identity))
        if hit is None:
            return None
        # The row may come from a differently spaced source with the same normalised key;
        # a flagged row's text is that source, so give back this caller's own text instead.
        return Translation(source, source if hit.problem else hit.text, hit.problem, "memory")

    def store(self, request: Request, result: Translation) -> None:
        """Keep a model output (flagged ones too, so they are not recomputed) under the request's
        key (``key()`` at submission); a full disk is logged, never raised: the caller still gets
        its translation."""
        try:
            self.memory.put(request.key, source=request.source, text=result.text, problem=result.problem,
                            identity=request.identity)
        except Exception:
            log.exception("cannot store a translation in the memory")

    def record_correction(self, source: str, target: str, context: Sequence[ContextLine]) -> None:
        self.memory.record_correction(source, target, context_key(context))
