"""The KV cache of a batch of rows, and the model forward that grows it.

One KV cache holds the batch: per layer ``[rows, heads, columns, head_dim]``, a boolean mask of the
columns each row attends to, and each row's next position id. Rows keep the positions they have
alone; columns a row does not use (alignment, the gap after a shared prefix) are masked, and a
masked column adds exactly nothing to attention, so each row gets the tokens it gets alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

Layers = list[tuple[torch.Tensor, torch.Tensor]]
"""Per layer: keys and values, ``[rows, heads, columns, head_dim]``."""

# Spare columns behind a cache's layers (``Room``): a decoding step writes its column there instead
# of copying the whole cache into a new one, as transformers' dynamic cache does (``torch.cat``).
# On the tiny model that copy was ~half of what a 16-row step costs more than a 1-row one
# (torch profiler, 50 steps: 1 row 26 ms of CPU time, 16 rows 50 ms, 12 ms of it ``aten::cat``).
SPARE_COLUMNS = 32


@dataclass
class Room:
    """The buffers behind some caches' layers, ``[rows, heads, capacity, head_dim]`` per layer,
    and how many columns of them are written. A cache grown from another views the same buffers,
    so only a cache that ends where the writing ends may write its next columns in place."""

    buffers: Layers
    written: int

    @property
    def capacity(self) -> int:
        return int(self.buffers[0][0].shape[2]) if self.buffers else 0


@dataclass
class KV:
    """The KV cache of some rows that all stand before feeding their last token."""

    layers: Layers
    mask: torch.Tensor  # [rows, columns] bool: the columns each row attends to
    positions: torch.Tensor  # [rows] long: the position id of each row's next token
    room: Room | None = None  # spare columns behind ``layers``, if any

    def appendable(self, columns: int) -> bool:
        """Whether ``columns`` more can be written in place, behind this cache's own."""
        room = self.room
        return room is not None and room.written == self.columns and room.capacity >= self.columns + columns

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
        cols = None if bool(used.all()) else torch.nonzero(used).flatten()
        width = self.columns if cols is None else len(cols)

        def pick(t: torch.Tensor) -> torch.Tensor:  # into a buffer with room to grow
            buffer = t.new_empty(len(index), t.shape[1], width + SPARE_COLUMNS, t.shape[3])
            if cols is None:
                torch.index_select(t, 0, index, out=buffer[:, :, :width])
            else:
                torch.index_select(t.index_select(0, index), 2, cols, out=buffer[:, :, :width])
            return buffer

        buffers = [(pick(k), pick(v)) for k, v in self.layers]
        layers = [(k[:, :, :width], v[:, :, :width]) for k, v in buffers]
        if cols is not None:
            mask = mask.index_select(1, cols)
        return KV(layers, mask, self.positions.index_select(0, index), Room(buffers, width))

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
    room = kv.room if kv is not None and kv.appendable(ids.shape[1]) else None
    cache = _cache(kv.layers if kv is not None and kv.columns else [], room)
    full_mask = mask if kv is None else torch.cat([kv.mask, mask], dim=1)
    out = model(input_ids=ids, attention_mask=_attention_mask(model, full_mask, ids.shape[1]),
                position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1)
    layers, buffers = [], []
    for layer in cache.layers:
        if not isinstance(layer, _AppendLayer) or layer.keys is None or layer.values is None or layer.room is None:
            raise TypeError(f"unexpected KV cache layer {type(layer).__name__}")
        layers.append((layer.keys, layer.values))
        buffers.append(layer.room)
    columns = int(full_mask.shape[1])
    if room is not None and all(new is old for new, old in zip(buffers, room.buffers)):
        room.written = columns  # written in place: the cache it grew from may not append any more
    else:
        room = Room(buffers, columns)
    next_positions = positions[:, -1] + 1
    return out.logits[:, -1, :], KV(layers, full_mask, next_positions, room)


def _attention_mask(model: Any, mask: torch.Tensor, queries: int) -> torch.Tensor | None:
    """The mask to pass: for one query per row under SDPA, the 4D mask transformers would build
    from ``mask`` (each row's columns; ``None`` when all are real, as it does); otherwise the 2D
    mask, for transformers to build."""
    if queries != 1 or getattr(model.config, "_attn_implementation", None) != "sdpa":
        return mask.long()
    return None if bool(mask.all()) else mask[:, None, None, :]


def _cache(layers: Layers, room: Room | None) -> DynamicCache:
    """A transformers cache over these tensors (not a copy): each layer writes the model's new
    columns into ``room`` (the buffers behind ``layers``), or into new buffers with room."""
    cache = DynamicCache()
    cache.layer_class_to_replicate = _AppendLayer  # the layers of an empty cache
    for i, (keys, values) in enumerate(layers):
        cache.layers.append(_AppendLayer(keys, values, room.buffers[i] if room is not None else None))
    return cache


class _AppendLayer(DynamicLayer):
    """transformers' dynamic cache layer, writing new columns behind its keys and values into the
    room of its buffers (``[rows, heads, capacity, head_dim]``), new buffers only when full."""

    def __init__(self, keys: torch.Tensor | None = None, values: torch.Tensor | None = None,
                 room: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.room = room
        if keys is not None and values is not None:
            self.lazy_initialization(keys, values)
            self.keys, self.values = keys, values

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        keys, values = self.keys, self.values
        assert keys is not None and values is not None
        written = keys.shape[2] if keys.dim() == 4 else 0
        columns = written + key_states.shape[2]
        if self.room is None or self.room[0].shape[2] < columns:
            self.room = (_buffer(keys, key_states, written, columns), _buffer(values, value_states, written, columns))
        key_buffer, value_buffer = self.room
        key_buffer[:, :, written:columns] = key_states
        value_buffer[:, :, written:columns] = value_states
        self.keys, self.values = key_buffer[:, :, :columns], value_buffer[:, :, :columns]
        return self.keys, self.values


def _buffer(old: torch.Tensor, new: torch.Tensor, written: int, columns: int) -> torch.Tensor:
    """A buffer for ``columns`` columns and ``SPARE_COLUMNS`` more, ``old``'s ``written`` ones in it."""
    buffer = new.new_empty(new.shape[0], new.shape[1], columns + SPARE_COLUMNS, new.shape[3])
    if written:
        buffer[:, :, :written] = old
    return buffer
