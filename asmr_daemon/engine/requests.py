"""Plain state shared by the engine, the scheduler and the translation memory.

A ``Request`` is one segment to translate. It carries no behaviour beyond its ordering
(priority, arrival, id), so the scheduler can be tested without threads or a model. The callers'
futures are not part of it: the engine keeps them (``waiters.Waiters``), keyed by request.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, Protocol, runtime_checkable

from asmr_daemon.engine.prompts import ContextLine, GlossaryEntry

Penalty = float | None | Sequence[float | None]
"""A call's repetition penalty: one for every row, or one per row; None: none."""


class Segment(NamedTuple):
    """One segment for ``submit_many``: the text and what goes into its prompt."""

    source: str
    context: Sequence[ContextLine] = ()
    glossary: Sequence[GlossaryEntry] = ()


@runtime_checkable
class Backend(Protocol):
    """What runs the model. The engine's worker thread is the only caller of these methods."""

    identity: str
    """Model + adapter identity; part of every translation-memory key."""

    def encode(self, prompt: str) -> list[int]:
        """Prompt text -> token ids (including whatever prefix the model needs)."""
        ...

    def generate(self, prompts: list[list[int]], *, max_new_tokens: list[int],
                 repetition_penalty: Penalty = None) -> list[list[int]]:
        """Greedy generation for a batch; returns only the new tokens of each row.

        ``repetition_penalty``: one for every row or one per row (None: no penalty), so a retry
        runs in the same call as first passes.

        A backend with ``preemptible = True`` also takes ``should_stop: Callable[[], bool]``:
        polled between decoding steps; when it turns True the call returns at once, with an
        ``Unfinished`` list of the tokens so far for every row that had not finished (the engine
        continues those rows later, together with the editor request that stopped them); and
        ``stop_prefill``, the same polled between prefill chunks only. It also takes
        ``on_row_done: Callable[[int, list[int]], None]``, called on the generating thread the
        step a row ends (eos or its own limit) with the row's index and tokens, so the engine can
        answer that row while the others go on. And ``prefill_budget_s: float | None``, passed while
        no editor is about: how long one prefill forward may take (larger chunks cost less per
        row; None: small chunks, so an editor's request waits little). And ``more:
        Callable[[list[int], list[list[int]]], Join]`` (the live rows and each row's tokens so
        far), polled after each step: the rows its ``Join`` gives (prompt + tokens so far, limit,
        penalty) join the running batch (continuous batching, and editors' requests joining); the
        result covers them after the prompts' rows, in that order. A backend with ``joins = True``
        polls ``more`` after every step of every call, so a waiting editor's request joins the
        call instead of stopping it; the live rows a ``Join`` parks leave the batch (their tokens so
        far in the result, their KV cache kept to continue them).
        """
        ...

    def decode(self, ids: list[int]) -> str:
        ...

    def with_adapter(self, adapter_dir: Path) -> Backend:
        """A backend on the same base model with another adapter (hot switch; the base is not reloaded).

        Slow preparation (reading, converting and checking the adapter) happens here, in the
        caller's thread, and raises ``AdapterError`` for an unusable directory. Anything that touches
        the live model happens later on the engine's worker thread (e.g. lazily on the first
        ``generate``), so requests in flight finish on the old adapter. The returned backend's
        ``identity`` names the new adapter. Both backends stay usable: the engine finishes requests
        submitted before the switch on the old one.
        """
        ...


def row_penalties(prompts: list[list[int]], penalty: Penalty) -> list[float | None]:
    """Each row's repetition penalty (one value means the same for all)."""
    penalties = list(penalty) if isinstance(penalty, Sequence) else [penalty] * len(prompts)
    if len(penalties) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(penalties)} repetition penalties")
    return penalties


def row_limits(prompts: list[list[int]], max_new_tokens: list[int] | int) -> list[int]:
    """Each row's ``max_new_tokens`` (one int means the same for all), after the checks every
    backend's ``generate`` makes on its arguments."""
    limits = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if len(limits) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(limits)} max_new_tokens")
    if any(not p for p in prompts):
        raise ValueError("empty prompt")
    return limits


Row = tuple[list[int], int, float | None]
"""A row joining a running call: prompt + tokens so far, tokens still to generate, penalty."""


@dataclass
class Join:
    """What a preemptible backend's ``more`` hook gives after a step: rows that join the batch (in
    the first prefill chunk first), and live rows to set aside first (``park``: each one's cache
    waits in the backend's store, as a row cut short, for the call that continues it)."""

    rows: list[Row] = field(default_factory=list)
    park: list[int] = field(default_factory=list)


class Unfinished(list):  # type: ignore[type-arg]
    """What ``generate`` returns for a row its preemption cut short: the tokens generated so far
    (no eos yet, under the row's limit). Greedy decoding continued from prompt + these tokens
    gives the tokens the uninterrupted run would have given."""


class Priority(enum.IntEnum):
    """Lower value = served first. Editors are interactive; files from the inbox are batch."""

    INTERACTIVE = 0
    BATCH = 1


class RequestStatus(enum.IntEnum):
    """Ordered like vLLM's: everything above RUNNING is final."""

    WAITING = 0
    RUNNING = 1
    FINISHED = 2
    CANCELLED = 3

    @property
    def is_finished(self) -> bool:
        return self > RequestStatus.RUNNING


@dataclass(frozen=True)
class Translation:
    source: str
    text: str
    """The translation; the source itself when the checks failed twice."""
    problem: str | None
    """Short reason when the checks flagged it ("leftover kana", "repetition", ...), else None."""
    origin: Literal["memory", "model", "correction"]


@dataclass(eq=False)
class Request:
    """One segment waiting for (or being run by) the model.

    ``key`` identifies identical work: two submissions with the same key share one request
    and every caller waiting for it gets the same result. ``prompt_ids`` is filled in by the
    engine's worker (the only thread that touches the backend, tokenizer included), so a
    request with ``prompt_ids is None`` is not ready to be planned yet.
    """

    request_id: int
    key: str
    source: str
    prompt: str
    priority: Priority
    arrival: int
    context: tuple[ContextLine, ...] = ()
    glossary: tuple[GlossaryEntry, ...] = ()
    prompt_ids: list[int] | None = None
    max_new_tokens: int = 0
    status: RequestStatus = RequestStatus.WAITING
    identity: str = ""
    """The backend identity at submission: the request runs on that backend (and adapter) even
    when the engine switched adapters meanwhile, so a file is never translated half by each."""
    generated: list[int] = field(default_factory=list)
    """Tokens generated before its batch was stopped for an editor request: the next run
    continues after them (prompt + generated), so a stop loses no work."""
    retry: bool = False
    """The output failed the checks once: run again from the prompt, with the repetition penalty."""
    alone: bool = False
    """Its micro-batch raised: run it in a batch of its own, so an error stays with its request."""

    @property
    def sort_key(self) -> tuple[int, int, int]:
        return (int(self.priority), self.arrival, self.request_id)

    def __lt__(self, other: Request) -> bool:
        return self.sort_key < other.sort_key

    @property
    def is_prepared(self) -> bool:
        return self.prompt_ids is not None

    @property
    def history(self) -> list[int]:
        """What its row continues from: the prompt and the tokens earlier, stopped calls generated."""
        return (self.prompt_ids or []) + self.generated

    @property
    def num_tokens(self) -> int:
        """Tokens this row occupies in a batch: prompt plus the generation cap."""
        return len(self.prompt_ids or ()) + self.max_new_tokens
