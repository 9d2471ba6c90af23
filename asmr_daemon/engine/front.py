"""The translation memory in front of the model: keys, lookups (corrections first) and storing
model outputs. Any thread may look up; the worker stores."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from asmr_daemon.config import DecodingSettings
from asmr_daemon.engine.memory import TranslationMemory, context_key, translation_key
from asmr_daemon.engine.prompts import ContextLine, GlossaryEntry
from asmr_daemon.engine.requests import Request, Segment, Translation

log = logging.getLogger(__name__)


class MemoryFront:
    def __init__(self, memory: TranslationMemory, *, template: str, decoding: DecodingSettings) -> None:
        self.memory = memory
        self.template = template
        self.decoding = decoding

    @property
    def decoding(self) -> DecodingSettings:
        return self._decoding

    @decoding.setter
    def decoding(self, decoding: DecodingSettings) -> None:
        self._decoding = decoding
        self._decoding_fields = dataclasses.asdict(decoding)  # once, not per key (half its cost)

    def key(self, source: str, context: Sequence[ContextLine], glossary: Sequence[GlossaryEntry],
            identity: str) -> str:
        return translation_key(source, context=context, glossary=glossary, identity=identity,
                               template=self.template, decoding=self._decoding_fields)

    def known(self, source: str, context: tuple[ContextLine, ...],
              glossary: tuple[GlossaryEntry, ...], identity: str) -> Translation | None:
        return self.known_many([Segment(source, context, glossary)], identity)[0][1]

    def known_many(self, segments: Sequence[Segment], identity: str) -> list[tuple[str, Translation | None]]:
        """Each segment's key and what is known of it: a correction (this context, then
        context-free) beats a stored model output. Two queries for all of them."""
        keys = [self.key(source, context, glossary, identity) for source, context, glossary in segments]
        wanted = [[(source, ctx) for ctx in dict.fromkeys((context_key(context), ""))]
                  for source, context, _ in segments]
        corrections = self.memory.corrections_for([pair for pairs in wanted for pair in pairs])
        stored = self.memory.get_many(keys)
        known: list[tuple[str, Translation | None]] = []
        for (source, _, _), key, pairs in zip(segments, keys, wanted):
            target = next((corrections[pair] for pair in pairs if pair in corrections), None)
            hit = stored.get(key)
            if target is not None:
                known.append((key, Translation(source=source, text=target, problem=None, origin="correction")))
            elif hit is not None:
                # The row may come from a differently spaced source with the same normalised key;
                # a flagged row's text is that source, so give back this caller's own text instead.
                known.append((key, Translation(source, source if hit.problem else hit.text, hit.problem, "memory")))
            else:
                known.append((key, None))
        return known

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
