"""Greedy batched decoding on a transformers causal LM with its own step loop (not ``generate``).

What the loop does that a ``generate`` call cannot (issue 14, measured in ``benchmarks/engine.py``):

* a row that ends (eos or its own limit) leaves the batch the same step, so a call costs what its
  rows need, not rows x its longest row;
* the prompt prefix its rows share (the prompt template) is computed once per backend and kept
  (``KVStore.prefixes``), so each row prefills only its own text; that prefill's logits give the
  row its first token, as in ``generate`` (no extra forward per call for it);
* rows join the running batch between steps (``Call.more``: continuous batching), each chunk of
  them prefilled on its own and its cache appended to the batch's, so a call need not drain;
* a row cut short (an editor's request stopped the call) keeps its KV cache
  (``KVStore.suspended``), keyed by its tokens so far; the call that continues it resumes there
  instead of prefilling prompt + tokens so far again.

One KV cache holds the batch: per layer ``[rows, heads, columns, head_dim]``, a boolean mask of the
columns each row attends to, and each row's next position id. Rows keep the positions they have
alone; columns a row does not use (alignment, the gap after a shared prefix) are masked, and a
masked column adds exactly nothing to attention, so each row gets the tokens it gets alone.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from asmr_daemon.engine.adapters import base_of
from asmr_daemon.engine.lean_lora import lean_lora
from asmr_daemon.engine.penalty import RowPenalty
from asmr_daemon.engine.tokenizer import left_pad

Layers = list[tuple[torch.Tensor, torch.Tensor]]
"""Per layer: keys and values, ``[rows, heads, columns, head_dim]``."""

PREFIXES_KEPT = 4  # prompt prefixes (templates) whose KV cache a backend keeps
# Rows cut short whose KV cache waits for the call that continues them (an editor's call resumes
# up to half a batch; the rest the next). A ChatGLM2-6B row of 100 tokens holds ~2.9 MB in bf16,
# so 64 rows bound this at ~190 MB; a row evicted earlier is simply prefilled again.
SUSPENDED_KEPT = 64
# New rows prefilled per forward. An editor request waits for one chunk at most, not a whole
# batch's prefill (32 rows x ~35 tokens took 41 ms on 2 CPU cores, tiny model; 8 rows 7 ms).
PREFILL_ROWS = 8


@dataclass
class KV:
    """The KV cache of some rows that all stand before feeding their last token."""

    layers: Layers
    mask: torch.Tensor  # [rows, columns] bool: the columns each row attends to
    positions: torch.Tensor  # [rows] long: the position id of each row's next token

    @property
    def rows(self) -> int:
        return int(self.mask.shape[0])

    @property
    def columns(self) -> int:
        return int(self.mask.shape[1])

    def select(self, rows: torch.Tensor | list[int]) -> KV:
        """These rows only, without the columns none of them attends to any more."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        used = mask.any(dim=0)
        if bool(used.all()):
            layers = [(k.index_select(0, index), v.index_select(0, index)) for k, v in self.layers]
        else:
            cols = torch.nonzero(used).flatten()
            layers = [(k.index_select(0, index).index_select(2, cols), v.index_select(0, index).index_select(2, cols))
                      for k, v in self.layers]
            mask = mask.index_select(1, cols)
        return KV(layers, mask, self.positions.index_select(0, index))

    def widened(self, columns: int) -> KV:
        """The same rows with masked empty columns in front, ``columns`` in all."""
        extra = columns - self.columns
        if extra <= 0:
            return self
        def pad(t: torch.Tensor) -> torch.Tensor:
            return torch.cat([t.new_zeros(t.shape[0], t.shape[1], extra, t.shape[3]), t], dim=2)
        layers = [(pad(k), pad(v)) for k, v in self.layers]
        mask = torch.cat([self.mask.new_zeros(self.rows, extra), self.mask], dim=1)
        return KV(layers, mask, self.positions)


def concat(parts: Sequence[KV]) -> KV:
    """The rows of all ``parts`` in one cache, in that order."""
    if len(parts) == 1:
        return parts[0]
    width = max(p.columns for p in parts)
    wide = [p.widened(width) for p in parts]
    layers = [(torch.cat([p.layers[i][0] for p in wide]), torch.cat([p.layers[i][1] for p in wide]))
              for i in range(len(wide[0].layers))]
    return KV(layers, torch.cat([p.mask for p in wide]), torch.cat([p.positions for p in wide]))


def forward(model: Any, kv: KV | None, ids: torch.Tensor, mask: torch.Tensor,
            positions: torch.Tensor) -> tuple[torch.Tensor, KV]:
    """Run ``ids`` ([rows, columns]; ``mask`` marks the real ones) after ``kv``: the logits at the
    last column and the cache with the new columns appended. ``model``: the transformers model
    (``adapters.base_of``), as peft's own ``generate`` steps it: peft's ``forward`` wrapper and
    transformers' mask building took ~14% of a tiny model's step (20 rows, CPU time 2.57 ->
    2.21 ms, medians of 40)."""
    cache = _cache(kv.layers if kv is not None and kv.columns else [])
    full_mask = mask if kv is None else torch.cat([kv.mask, mask], dim=1)
    out = model(input_ids=ids, attention_mask=_attention_mask(model, full_mask, ids.shape[1]),
                position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1)
    layers = []
    for layer in cache.layers:
        if not isinstance(layer, DynamicLayer) or layer.keys is None or layer.values is None:
            raise TypeError(f"unexpected KV cache layer {type(layer).__name__}")
        layers.append((layer.keys, layer.values))
    next_positions = positions[:, -1] + 1
    return out.logits[:, -1, :], KV(layers, full_mask, next_positions)


def _attention_mask(model: Any, mask: torch.Tensor, queries: int) -> torch.Tensor | None:
    """The mask to pass: for one query per row under SDPA, the 4D mask transformers would build
    from ``mask`` (each row's columns; ``None`` when all are real, as it does); otherwise the 2D
    mask, for transformers to build."""
    if queries != 1 or getattr(model.config, "_attn_implementation", None) != "sdpa":
        return mask.long()
    return None if bool(mask.all()) else mask[:, None, None, :]


def _cache(layers: Layers) -> DynamicCache:
    """A transformers cache over these tensors (not a copy: the model's step appends to them)."""
    cache = DynamicCache()
    for keys, values in layers:
        layer = DynamicLayer()
        layer.lazy_initialization(keys, values)
        layer.keys, layer.values = keys, values
        cache.layers.append(layer)
    return cache


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


Row = tuple[list[int], int, float | None]
"""A row joining a running call: prompt + tokens so far, tokens still to generate, penalty."""


@dataclass
class Call:
    """One ``generate`` call: its rows, limits and hooks."""

    rows: list[list[int]]  # prompt + tokens so far, per row
    limits: list[int]
    eos: int
    pad: int
    penalties: list[float | None] = field(default_factory=list)  # per row; None: no penalty
    prefill_rows: int = PREFILL_ROWS  # new rows per prefill forward
    should_stop: Callable[[], bool] | None = None
    on_row_done: Callable[[int, list[int]], None] | None = None
    # Continuous batching: polled after each step, gives rows that join the running batch (none:
    # not now; a call with no live rows left that gets none ends).
    more: Callable[[], list[Row]] | None = None

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


def run(model: Any, store: KVStore, call: Call, device: torch.device) -> tuple[list[list[int]], set[int]]:
    """Greedy tokens per row (cut at its eos and its limit), and the rows ``should_stop`` cut short:
    those hold their tokens so far, and their KV cache waits in the store for the call that
    continues them. Rows ``call.more`` gives join the batch between steps; the result covers
    them too (``call.rows`` grows). peft's LoRA layers run lean meanwhile (``lean_lora``)."""
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
        if len(keep) < len(live):  # rows that ended leave the batch
            batch.live = live = [live[s] for s in keep]
            if live:
                index = torch.tensor(keep, device=device)
                kv, chosen = kv.select(index), chosen.index_select(0, index)
                if penalty is not None:
                    penalty.keep(index)
        batch.kv, batch.last = (kv, chosen) if live else (None, None)
        if penalty is not None and live:
            penalty.add(chosen)
        # Polled after a step, not before the first: every call moves each of its rows on, so
        # rows resumed while editor requests keep coming are never cut again with nothing done.
        if call.should_stop is not None and call.should_stop():
            return generated, _suspend(store, call, generated, batch)
        if call.more is not None and (joining := call.more()):
            new = list(call.add(joining))
            generated += [[] for _ in new]
            if cut := _join(model, store, call, device, generated, batch, new):
                return generated, cut
    return generated, set()


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
    ``call.prefill_rows`` at a time, each prefill also giving its rows their first token (a row may
    end right there). If ``should_stop`` turns True between two chunks, every live row and every
    row not yet prefilled is cut short (the live ones wait in the store); those rows."""
    rows = [i for i in rows if call.limits[i] > 0]
    resumed = {i: store.suspended.pop(tuple(call.rows[i])) for i in rows if tuple(call.rows[i]) in store.suspended}
    new = [i for i in rows if i not in resumed]
    parts, order = [resumed[i] for i in resumed], list(resumed)
    for start in range(0, len(new), call.prefill_rows):
        if start and call.should_stop is not None and call.should_stop():
            batch.extend(call, generated, concat(parts) if parts else None, order, device)
            return _suspend(store, call, generated, batch) | set(new[start:])
        chunk = new[start : start + call.prefill_rows]
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
