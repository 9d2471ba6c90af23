"""The local backend: batched greedy decoding with the resident transformers (+ peft) model.

It only runs the model; the scheduler decides what goes into a batch. A prompt gives the same tokens
alone or in a batch: the step loop (``engine/decoding.py``) keeps each row's own positions and masks
the cache columns a row does not use.

Adapters: several ``LocalBackend``s may share one ``LoadedModel``, each with its own named peft
adapter (``with_adapter``); each generate call activates its own, so the engine can finish old
requests on the old adapter while new ones use the new. The base model is loaded once.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from asmr_daemon.engine import decoding
from asmr_daemon.engine.adapters import PreparedAdapter, attach_prepared, prepare_adapter
from asmr_daemon.engine.loading import LoadedModel
from asmr_daemon.engine.requests import Join, Penalty, Unfinished, row_limits, row_penalties
from asmr_daemon.engine.tokenizer import SPECIAL_TOKENS

_adapter_names = itertools.count(1)


class LocalBackend:
    """Greedy generation on a ``LoadedModel``. Call ``encode``/``generate``/``decode``/``retire``
    from the one thread that owns the model; ``with_adapter`` from any thread."""

    # ``generate`` takes ``should_stop`` (then returns ``Unfinished`` rows) and ``on_row_done``;
    # it polls ``more`` after every step, so an editor's request can join the running call.
    preemptible = True
    joins = True

    def __init__(self, loaded: LoadedModel, *, adapter: PreparedAdapter | None = None) -> None:
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        # Special tokens the checks look for in outputs (they must never leak into a translation).
        self.special_tokens: tuple[str, ...] = tuple(SPECIAL_TOKENS)
        # The base alone: once another backend wraps the model in peft, run with adapters disabled.
        # (A peft model handed in without a named adapter -- training's -- is used as it is.)
        self._base_only = loaded.adapter_identity is None and not _is_peft(loaded.model)
        if adapter is None:  # the adapter attached by load_model, if any
            self.adapter_name = loaded.adapter_name
            self.adapter_identity = loaded.adapter_identity
            self.adapter_dir = loaded.adapter_dir
        else:
            self.adapter_name = f"adapter-{next(_adapter_names)}"
            self.adapter_identity = adapter.identity
            self.adapter_dir = adapter.adapter_dir
        self._pending = adapter  # attached on the worker thread, at first use
        self._kv = decoding.KVStore()  # this adapter's prompt prefixes and rows cut short

    @property
    def identity(self) -> str:
        """Base + this backend's adapter: part of every translation-memory key, so a new adapter
        never gets another adapter's cached outputs."""
        return f"{self.loaded.identity}+{self.adapter_identity or 'no-adapter'}"

    def with_adapter(self, adapter_dir: Path) -> LocalBackend:
        """A backend with ``adapter_dir`` on the same resident base model (never reloaded).

        Reads, converts and shape-checks the adapter now (AdapterError if unusable); attaching it
        to the live model waits for the new backend's first ``generate`` on the worker thread.
        """
        return LocalBackend(self.loaded, adapter=prepare_adapter(self.loaded, Path(adapter_dir)))

    def retire(self) -> None:
        """Free this backend's adapter (the engine calls it once nothing runs on it any more)."""
        self._pending = None
        self._kv.clear()
        model = self.loaded.model
        if (self.adapter_name is not None and _is_peft(model)
                and self.adapter_name in model.peft_config and len(model.peft_config) > 1):
            if model.active_adapter == self.adapter_name:  # hand "active" to a live adapter first
                model.set_adapter(next(n for n in model.peft_config if n != self.adapter_name), inference_mode=True)
            model.delete_adapter(self.adapter_name)
            self.adapter_name = None

    def _activate(self) -> contextlib.AbstractContextManager[Any]:
        """Make this backend's adapter the active one (attaching it first if new)."""
        if self._pending is not None:
            attach_prepared(self.loaded, self._pending, self.adapter_name or "default")
            self._pending = None
        model = self.loaded.model
        if not _is_peft(model):
            return contextlib.nullcontext()
        if self.adapter_name is None:
            return model.disable_adapter() if self._base_only else contextlib.nullcontext()
        if self.adapter_name not in model.peft_config:
            raise RuntimeError(f"adapter {self.adapter_dir} was retired and cannot run any more")
        if model.active_adapter != self.adapter_name:
            model.set_adapter(self.adapter_name, inference_mode=True)
        return contextlib.nullcontext()

    def encode(self, prompt: str) -> list[int]:
        """Token ids of a prompt text, as ChatGLM2 builds them ([gMASK], sop, pieces)."""
        return self.tokenizer.encode_prompt(prompt)

    def generate(
        self,
        prompts: list[list[int]],
        *,
        max_new_tokens: list[int] | int,
        repetition_penalty: Penalty = None,
        should_stop: Callable[[], bool] | None = None,
        stop_prefill: Callable[[], bool] | None = None,
        on_row_done: Callable[[int, list[int]], None] | None = None,
        prefill_budget_s: float | None = None,
        more: Callable[[list[int], list[list[int]]], Join] | None = None,
    ) -> list[list[int]]:
        """Generated ids per prompt (prompt excluded), cut at the prompt's own eos and its own limit.

        ``should_stop`` is polled between decoding steps; when it returns True generation stops at
        once and the rows that had not finished (no eos, under their limit) come back as
        ``Unfinished`` (their tokens so far), to be continued later. Finished rows are exact.
        ``stop_prefill`` does the same, polled only between the chunks of a prefill.
        ``on_row_done(index, ids)`` is called the step a row ends, with the ids it returns.
        ``prefill_budget_s``: prefill new rows in chunks as large as fit this time by the measured
        cost (None: ``decoding.PREFILL_ROWS`` rows, so an editor waits for a small chunk).
        ``more(live, tokens)`` is polled after each step with the rows still generating and each
        row's tokens so far. The rows its ``Join`` gives (prompt + tokens so far, limit, penalty)
        join the running batch, and the result covers them after the prompts' rows, in the order
        given; the live rows it parks leave the batch, their tokens so far in the result and their
        KV cache kept for the call that continues them.
        A prompt that continues a row cut short resumes from that row's kept KV cache
        (``engine/decoding.py``); every row gets the tokens it gets alone.
        """
        if not prompts:
            return []
        call = decoding.Call([list(p) for p in prompts], row_limits(prompts, max_new_tokens),
                             eos=self.tokenizer.eos_id, pad=self.tokenizer.pad_id,
                             penalties=row_penalties(prompts, repetition_penalty), should_stop=should_stop,
                             stop_prefill=stop_prefill,
                             on_row_done=on_row_done, prefill_budget_s=prefill_budget_s,
                             more=more)
        with self._activate(), torch.inference_mode():
            generated, cut = decoding.run(self.loaded.model, self._kv, call, self.loaded.device)
        return [Unfinished(ids) if row in cut else ids for row, ids in enumerate(generated)]

    def decode(self, ids: list[int]) -> str:
        """Text of generated ids (specials dropped)."""
        return self.tokenizer.decode(ids)


def _is_peft(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)
