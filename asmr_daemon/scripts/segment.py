"""Sentence splitting of long lines with spaCy's Japanese tokenizer (SudachiPy).

Long multi-sentence lines translate better, and cache better in the translation memory, one
sentence at a time. Boundaries are found on tokens, not by regex over the string, so that
punctuation inside a word or a symbol token is never mistaken for a sentence end:

* a sentence ends after a run of terminal-punctuation tokens (``。！？!?…‥``), together with
  any closing brackets right after it (``！」``, ``。）``) and the whitespace that follows;
* never inside brackets -- quoted speech ``「…。…」`` stays one piece; a quote that closes after
  terminal punctuation ends the sentence unless a quotative particle follows
  (``「おはよう！」と言った`` stays whole);
* pieces without letters (a leading ``……``, a trailing ``♪``) are merged into a neighbour;
* bodies shorter than ``min_chars`` are not split at all.

``"".join(split(text)) == text`` always holds: pieces are slices of the input.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from typing import Any

from asmr_daemon.scripts.classify import has_letters

TERMINAL = frozenset("。！？!?…‥｡")
OPENERS = "「『（(【〈《〔［｛"
CLOSERS = "」』）)】〉》〕］｝｣"
# Particles that glue a closed quote to the rest of the sentence: 「…！」と言った, 「…」って.
QUOTE_PARTICLES = frozenset(
    {"と", "って", "っと", "て", "とか", "など", "なんて", "の", "が", "を", "に", "は", "も", "で"}
)
# SudachiPy refuses inputs over ~49 KB; a "line" that long is not dialogue, keep it whole.
_MAX_INPUT_BYTES = 40_000


class Segmenter:
    """Splits a line body into sentences. Loads the spaCy pipeline on first real use.

    Thread-safe: the watcher and editor connections share one instance (``get_segmenter``).
    """

    def __init__(self, min_chars: int = 24, nlp: Any | None = None) -> None:
        self.min_chars = min_chars
        self._nlp = nlp
        self._lock = threading.Lock()

    @property
    def nlp(self) -> Any:
        """The spaCy ``Language``; loading takes about a second, so it happens lazily."""
        with self._lock:
            if self._nlp is None:
                import spacy  # slow import, only when a long line needs splitting

                with warnings.catch_warnings():
                    # spaCy 3.8 calls SudachiPy's deprecated Dictionary.create(); not ours to fix.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    self._nlp = spacy.blank("ja")
            return self._nlp

    def split(self, text: str) -> list[str]:
        """Sentences of ``text``; a single piece for short text or text without boundaries."""
        if len(text) < self.min_chars or len(text.encode("utf-8")) > _MAX_INPUT_BYTES:
            return [text] if text else []
        nlp = self.nlp
        with self._lock:
            doc = nlp(text)
        if doc.text != text:  # never expected; offsets would be meaningless
            return [text]
        tokens = [(tok.idx, tok.text) for tok in doc]
        cuts = _boundaries(tokens, text)
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True) if b > a]
        return _merge_letterless(pieces)


def _all_in(token: str, chars: str | frozenset[str]) -> bool:
    return bool(token) and all(ch in chars for ch in token)


def _boundaries(tokens: Sequence[tuple[int, str]], text: str) -> list[int]:
    """Character offsets where a new sentence starts."""
    cuts: list[int] = []
    depth = 0
    i = 0
    while i < len(tokens):
        _, tok = tokens[i]
        if not _all_in(tok, TERMINAL):
            for ch in tok:
                if ch in OPENERS:
                    depth += 1
                elif ch in CLOSERS:
                    depth = max(0, depth - 1)
            i += 1
            continue
        # A run of terminal punctuation and closing brackets: "！？", "……", "。」", "！」』".
        depth_before = depth
        j = i
        while j + 1 < len(tokens):
            nxt = tokens[j + 1][1]
            if _all_in(nxt, TERMINAL):
                j += 1
            elif _all_in(nxt, CLOSERS):
                depth = max(0, depth - len(nxt))
                j += 1
            else:
                break
        i = j + 1
        if depth > 0:
            continue  # inside brackets: 「今日は。いい天気ね」
        if depth_before > 0 and i < len(tokens) and tokens[i][1] in QUOTE_PARTICLES:
            continue  # 「おはよう！」と言った
        start, last = tokens[j]
        end = start + len(last)
        while end < len(text) and text[end].isspace():
            end += 1  # whitespace between sentences goes with the preceding one
        if end < len(text):
            cuts.append(end)
    return sorted(set(cuts))


def _merge_letterless(pieces: list[str]) -> list[str]:
    """Glue pieces without letters (``……``, ``♪``) to a neighbour; they translate to nothing."""
    out: list[str] = []
    carry = ""
    for piece in pieces:
        if not has_letters(piece):
            if out:
                out[-1] += piece
            else:
                carry += piece
            continue
        out.append(carry + piece)
        carry = ""
    if carry:
        out.append(carry)
    return out


_shared: Segmenter | None = None
_shared_lock = threading.Lock()


def get_segmenter() -> Segmenter:
    """The process-wide Segmenter (one spaCy pipeline per process, loaded on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Segmenter()
        return _shared
