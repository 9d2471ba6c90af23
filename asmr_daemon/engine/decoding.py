"""Greedy batched decoding on a transformers causal LM with its own step loop (not ``generate``).

What the loop does that a ``generate`` call cannot (issue 14, measured in ``benchmarks/engine.py``):

* a row that ends (eos or its own limit) leaves the batch the same step, so a call costs what its
  rows need, not rows x its longest row;
* the prompt prefix its rows share (the prompt template) is computed once per backend and kept
  (``KVStore.prefixes``), so each row prefills only its own text; that prefill's logits give the
  row its first token, as in ``generate`` (no extra forward per call for it);
* rows join the running batch between steps (``Call.more``: continuous batching, and an editor's
  request joining the call instead of stopping it), each chunk of them prefilled on its own and its
  cache appended to the batch's, so a call need not drain;
* a row cut short (the call stopped) or set aside (``Join.park``: an editor joined and the call
  carries fewer rows meanwhile) keeps its KV cache (``KVStore.suspended``), keyed by its tokens so
  far; the call that continues it (this one, if it joins again) resumes there instead of
  prefilling prompt + tokens so far again;
* a step writes each row's new column into spare room behind the batch's cache instead of
  copying the whole cache (``engine/kv_cache.py``, which holds the cache and the forward).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from asmr_daemon.engine.adapters import base_of
from asmr_daemon.engine.kv_cache import KV, concat, forward
from asmr_daemon.engine.lean_lora import lean_lora
from asmr_daemon.engine.penalty import RowPenalty
from asmr_daemon.engine.requests import Join, Row
from asmr_daemon.engine.tokenizer import left_pad

PREFIXES_KEPT = 4  # prompt prefixes (templates) whose KV cache a backend keeps
# Rows cut short whose KV cache waits for the call that continues them (an editor's call resumes
# up to half a batch; the rest the next). A ChatGLM2-6B row of 100 tokens holds ~2.9 MB in bf16
# (~0.9 MB more for its spare columns, kv_cache.SPARE_COLUMNS), so 64 rows bound this at ~250 MB; a
# row evicted earlier is simply prefilled again.
SUSPENDED_KEPT = 64
# New rows prefilled per forward. An editor request waits for one chunk at most, not a whole
# batch's prefill (32 rows x ~35 tokens took 41 ms on 2 CPU cores, tiny model; 8 rows 7 ms).
PREFILL_ROWS = 8


@dataclass
class KVStore:
    """What a backend keeps between calls: prompt prefixes and rows cut short. Worker thread only."""

    prefixes: OrderedDict[tuple[int, ...], KV] = field(default_factory=OrderedDict)
    suspended: OrderedDict[tuple[int, ...], KV] = field(default_factory=OrderedDict)
    row_prefill_seconds: float | None = None  # measured, a moving average

    def chunk_rows(self, budget_s: float | None) -> int:
        """Rows per prefill chunk: ``PREFILL_ROWS``, or as many as fit ``budget_s`` by the
        measured cost, if more."""
        if budget_s is None or not self.row_prefill_seconds:
            return PREFILL_ROWS
        return max(PREFILL_ROWS, int(budget_s / self.row_prefill_seconds))

    def measured_prefill(self, rows: int, seconds: float) -> None:
        if rows < PREFILL_ROWS:  # mostly a forward's fixed cost: it would overstate a row's
            return
        per_row = seconds / rows
        old = self.row_prefill_seconds
        self.row_prefill_seconds = per_row if old is None else 0.8 * old + 0.2 * per_row

    def clear(self) -> None:
        self.prefixes.clear()
        self.suspended.clear()

    def suspend(self, tokens: tuple[int, ...], kv: KV) -> None:
        self.suspended[tokens] = kv
        while len(self.suspended) > SUSPENDED_KEPT:
            self.suspended.popitem(last=False)

    def prefix_for(self, model: Any, histories: list[list[int]], device: torch.device) -> KV | None:
        """The cached KV of the longest kept prefix every history starts with and is longer than
        (each row keeps a token of its own, whose logits give its next token); if none and several
        rows share a prefix, that prefix, computed once now and kept."""
        shortest = min(len(h) for h in histories)
        for tokens, kv in sorted(self.prefixes.items(), key=lambda item: -len(item[0])):
            if len(tokens) < shortest and all(tuple(h[: len(tokens)]) == tokens for h in histories):
                self.prefixes.move_to_end(tokens)
                return kv
        common = _common_prefix(histories)[: shortest - 1]
        if len(histories) < 2 or len(common) < 2:
            return None
        ids = torch.tensor([common], device=device)
        _, kv = forward(model, None, ids, torch.ones_like(ids, dtype=torch.bool),
                        torch.arange(len(common), device=device)[None])
        self.prefixes[tuple(common)] = kv
        while len(self.prefixes) > PREFIXES_KEPT:
            self.prefixes.popitem(last=False)
        return kv


def _common_prefix(rows: list[list[int]]) -> list[int]:
    first = rows[0]
    length = min(len(r) for r in rows)
    for i in range(length):
        if any(r[i] != first[i] for r in rows):
            return first[:i]
    return first[:length]


def prefill(model: Any, store: KVStore, rows: list[list[int]], pad: int,
            device: torch.device) -> tuple[torch.Tensor, KV]:
    """Run new rows: the shared prefix from the store, then each row's rest, left-padded to the
    longest rest. The logits at each row's last token, and the cache of all its tokens."""
    prefix = store.prefix_for(model, rows, device)
    shared = 0 if prefix is None else prefix.columns
    rests = [r[shared:] for r in rows]  # never empty: a kept prefix is shorter than every row
    base = None if prefix is None else KV(
        [(k.expand(len(rests), -1, -1, -1), v.expand(len(rests), -1, -1, -1)) for k, v in prefix.layers],
        prefix.mask.expand(len(rests), -1), prefix.positions.expand(len(rests)))
    ids, mask = left_pad(rests, pad)
    positions = torch.where(mask, shared + mask.cumsum(dim=1) - 1, 0)  # each row's own, after the prefix
    # The cache's next positions come out as shared + len(rest) = len(row): the last column is real.
    return forward(model, base, ids.to(device), mask.to(device), positions.to(device))


@dataclass
class Call:
    """One ``generate`` call: its rows, limits and hooks."""

    rows: list[list[int]]  # prompt + tokens so far, per row
    limits: list[int]
    eos: int
    pad: int
    penalties: list[float | None] = field(default_factory=list)  # per row; None: no penalty
    # New rows per prefill forward: PREFILL_ROWS, or what fits this by the measured cost
    # (``KVStore.chunk_rows``), asked at each join: a call may run a whole job.
    prefill_budget_s: float | None = None
    should_stop: Callable[[], bool] | None = None
    # Polled between prefill chunks too, with ``should_stop``: True there cuts the call the same
    # way (an editor's request that could join after the prefill would wait for every chunk).
    stop_prefill: Callable[[], bool] | None = None
    on_row_done: Callable[[int, list[int]], None] | None = None
    # Polled after each step with the live rows and every row's tokens so far: rows that join the
    # running batch and rows to set aside (none: not now; a call with no live rows left ends).
    more: Callable[[list[int], list[list[int]]], Join] | None = None

    def __post_init__(self) -> None:
        self.penalties = self.penalties or [None] * len(self.rows)

    def add(self, rows: list[Row]) -> range:
        """Append joining rows; their indices."""
        first = len(self.rows)
        for tokens, limit, penalty in rows:
            self.rows.append(list(tokens))
            self.limits.append(limit)
            self.penalties.append(penalty)
        return range(first, len(self.rows))


@dataclass
class _Batch:
    """The rows a call is generating: their cache (all history but the last token), the live rows
    in the cache's order, each one's last token, and the penalty state if any row has one."""

    kv: KV | None = None
    live: list[int] = field(default_factory=list)
    last: torch.Tensor | None = None
    penalty: RowPenalty | None = None

    def extend(self, call: Call, generated: list[list[int]], kv: KV | None, rows: list[int],
               device: torch.device) -> None:
        """Add rows (their cache ``kv``) behind the live ones."""
        if not rows:
            return
        assert kv is not None
        self.kv = kv if self.kv is None else concat([self.kv, kv])
        self.live = self.live + rows
        last = torch.tensor([(generated[row] or call.rows[row])[-1] for row in rows], device=device, dtype=torch.long)
        self.last = last if self.last is None else torch.cat([self.last, last])
        penalties = [call.penalties[row] for row in self.live]  # seen tokens rebuilt for all rows
        self.penalty = (RowPenalty.of([call.rows[row] + generated[row] for row in self.live], penalties, device)
                        if any(penalties) else None)

    def keep(self, slots: list[int], device: torch.device) -> None:
        """Only the live rows at these slots go on: their cache, last tokens and penalty state."""
        self.live = [self.live[slot] for slot in slots]
        if not slots:
            self.kv, self.last, self.penalty = None, None, None
            return
        assert self.kv is not None and self.last is not None
        index = torch.tensor(slots, device=device)
        self.kv, self.last = self.kv.select(index), self.last.index_select(0, index)
        if self.penalty is not None:
            self.penalty.keep(index)


def run(model: Any, store: KVStore, call: Call, device: torch.device) -> tuple[list[list[int]], set[int]]:
    """Greedy tokens per row (cut at its eos and its limit), and the rows ``should_stop`` cut short:
    those hold their tokens so far, and their KV cache waits in the store for the call that
    continues them. Rows ``call.more`` gives join the batch between steps; the result covers
    them too (``call.rows`` grows); a row it parks holds its tokens until then. peft's LoRA layers
    run lean meanwhile (``lean_lora``)."""
    with lean_lora(model):
        return _run(base_of(model), store, call, device)


def _run(model: Any, store: KVStore, call: Call, device: torch.device) -> tuple[list[list[int]], set[int]]:
    generated: list[list[int]] = [[] for _ in call.rows]
    batch = _Batch()
    if cut := _join(model, store, call, device, generated, batch, list(range(len(call.rows)))):
        return generated, cut
    while batch.live:
        assert batch.kv is not None and batch.last is not None  # live rows have a cache
        live, penalty = batch.live, batch.penalty
        logits, kv = forward(model, batch.kv, batch.last[:, None],
                             torch.ones((len(live), 1), dtype=torch.bool, device=device), batch.kv.positions[:, None])
        chosen = (logits if penalty is None else penalty.apply(logits)).argmax(dim=-1)
        keep = _advance(call, live, chosen.tolist(), generated)
        batch.kv, batch.last = kv, chosen
        if penalty is not None:
            penalty.add(chosen)
        if len(keep) < len(live):  # rows that ended leave the batch
            batch.keep(keep, device)
        # Polled after a step, not before the first: every call moves each of its rows on, so
        # rows resumed while editor requests keep coming are never cut again with nothing done.
        if call.should_stop is not None and call.should_stop():
            return generated, _suspend(store, call, generated, batch)
        if call.more is not None:
            join = call.more(batch.live, generated)
            if join.park:
                _park(store, call, generated, batch, set(join.park), device)
            if join.rows:
                new = list(call.add(join.rows))
                generated += [[] for _ in new]
                if cut := _join(model, store, call, device, generated, batch, new):
                    return generated, cut
    return generated, set()


def _park(store: KVStore, call: Call, generated: list[list[int]], batch: _Batch, rows: set[int],
          device: torch.device) -> None:
    """Set live ``rows`` aside: their cache waits in the store; the batch goes on without them."""
    assert batch.kv is not None
    for slot, row in enumerate(batch.live):
        if row in rows:
            store.suspend(tuple(call.rows[row] + generated[row]), batch.kv.select([slot]))
    batch.keep([slot for slot, row in enumerate(batch.live) if row not in rows], device)


def _suspend(store: KVStore, call: Call, generated: list[list[int]], batch: _Batch) -> set[int]:
    """Keep the cache of every live row for the call that continues it; those rows."""
    if batch.kv is not None:
        for slot, row in enumerate(batch.live):
            store.suspend(tuple(call.rows[row] + generated[row]), batch.kv.select([slot]))
    return set(batch.live)


def _advance(call: Call, live: list[int], tokens: list[int], generated: list[list[int]]) -> list[int]:
    """Give each live row its token; report the rows that end; the slots of those that go on."""
    keep = []
    for slot, (row, token) in enumerate(zip(live, tokens)):
        if token != call.eos:
            generated[row].append(token)
        if token == call.eos or len(generated[row]) >= call.limits[row]:
            if call.on_row_done is not None:
                call.on_row_done(row, generated[row])
        else:
            keep.append(slot)
    return keep


def _join(model: Any, store: KVStore, call: Call, device: torch.device, generated: list[list[int]],
          batch: _Batch, rows: list[int]) -> set[int]:
    """Add ``rows`` to the batch: resumed ones from the store; new ones prefilled
    ``KVStore.chunk_rows`` at a time, each prefill also giving its rows their first token (a row may
    end right there). If ``should_stop`` or ``stop_prefill`` turns True between two chunks, every
    live row and every row not yet prefilled is cut short (the live ones wait in the store); those
    rows."""
    rows = [i for i in rows if call.limits[i] > 0]
    resumed = {i: store.suspended.pop(tuple(call.rows[i])) for i in rows if tuple(call.rows[i]) in store.suspended}
    new = [i for i in rows if i not in resumed]
    parts, order = [resumed[i] for i in resumed], list(resumed)
    size = store.chunk_rows(call.prefill_budget_s)
    for start in range(0, len(new), size):
        if start and any(poll is not None and poll() for poll in (call.should_stop, call.stop_prefill)):
            batch.extend(call, generated, concat(parts) if parts else None, order, device)
            return _suspend(store, call, generated, batch) | set(new[start:])
        chunk = new[start : start + size]
        began = time.perf_counter()
        logits, kv = prefill(model, store, [call.rows[i] for i in chunk], call.pad, device)
        penalty = RowPenalty.of([call.rows[i] for i in chunk], [call.penalties[i] for i in chunk], device)
        first = (logits if penalty is None else penalty.apply(logits)).argmax(dim=-1).tolist()  # waits for the device
        store.measured_prefill(len(chunk), time.perf_counter() - began)
        keep = _advance(call, chunk, first, generated)
        if keep:
            parts.append(kv if len(keep) == len(chunk) else kv.select(keep))
            order += [chunk[slot] for slot in keep]
    batch.extend(call, generated, concat(parts) if parts else None, order, device)
    return set()
