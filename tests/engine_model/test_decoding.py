"""The engine's step loop (engine/decoding.py) on a random ChatGLM2-shaped model + LoRA: the tokens
transformers' ``generate`` gives each prompt alone, with rows leaving the batch as they end, the
shared template prefix computed once, and rows cut short resumed from their kept KV cache."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from asmr_daemon.config import DEFAULT_TEMPLATE
from asmr_daemon.engine import decoding
from asmr_daemon.engine.adapters import base_of
from asmr_daemon.engine.backend import LocalBackend
from asmr_daemon.engine.loading import load_model
from asmr_daemon.engine.prompts import build_prompt
from asmr_daemon.engine.requests import Join

from .kit import random_model, random_native_lora, write_adapter, write_chatglm2_checkpoint

LINES = ["おはよう", "ゆっくり休んでね。おやすみなさい。", "（囁き）ねえ、耳元でささやいてあげる……ふー。", "うん"]


@pytest.fixture(scope="module")
def backend(tmp_path_factory, sp_model, glm_config) -> LocalBackend:
    tmp = tmp_path_factory.mktemp("decoding")
    base = random_model(glm_config, seed=7)
    sd, cfg = random_native_lora(base, seed=3)
    return LocalBackend(load_model(write_chatglm2_checkpoint(base, tmp / "m", sp_model),
                                   write_adapter(sd, cfg, tmp / "lora"), device="cpu", progress=False))


class Recording:
    """The model the decoder runs, recording the shape of every input it runs."""

    def __init__(self, model: Any) -> None:
        self.model = base_of(model)
        self.config = self.model.config
        self.shapes: list[tuple[int, int]] = []

    def __call__(self, *, input_ids: torch.Tensor, **kwargs: Any) -> Any:
        self.shapes.append(tuple(input_ids.shape))
        return self.model(input_ids=input_ids, **kwargs)

    def modules(self) -> Any:  # so the decoder finds the LoRA layers to run lean
        return self.model.modules()


def prompts(backend: LocalBackend) -> list[list[int]]:
    return [backend.encode(build_prompt(line, template=DEFAULT_TEMPLATE)) for line in LINES]


def transformers_alone(backend: LocalBackend, prompt: list[int], limit: int, penalty: float | None = None) -> list[int]:
    """transformers' greedy ``generate`` on the prompt alone: the reference."""
    with torch.inference_mode():
        out = backend.loaded.model.generate(input_ids=torch.tensor([prompt]), do_sample=False, max_new_tokens=limit,
                                            eos_token_id=backend.tokenizer.eos_id, pad_token_id=backend.tokenizer.pad_id,
                                            repetition_penalty=penalty or 1.0)
    ids = out[0, len(prompt):].tolist()
    return ids[: ids.index(backend.tokenizer.eos_id)] if backend.tokenizer.eos_id in ids else ids


def run(backend: LocalBackend, model: Any, store: decoding.KVStore, rows: list[list[int]], limits: list[int],
        **hooks: Any) -> tuple[list[list[int]], set[int]]:
    call = decoding.Call(rows, limits, eos=backend.tokenizer.eos_id, pad=backend.tokenizer.pad_id, **hooks)
    with torch.inference_mode():
        return decoding.run(model, store, call, torch.device("cpu"))


def test_a_batch_gives_what_transformers_gives_each_prompt_alone_and_rows_leave_as_they_end(backend):
    rows, limits = prompts(backend), [3, 12, 7, 1]
    model = Recording(backend.loaded.model)
    got, cut = run(backend, model, decoding.KVStore(), rows, limits)
    assert got == [transformers_alone(backend, p, n) for p, n in zip(rows, limits)] and cut == set()
    steps = [rows_ for rows_, width in model.shapes if width == 1]
    # The prefill gives each row its first token (the 1-token row ends there); then one row fewer
    # each time a row reaches its limit.
    assert steps == [3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 1]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_steps_pass_the_mask_each_attention_implementation_takes(backend, attention):
    """Under SDPA the decoder passes single-token steps a 4D mask it builds (None when every column
    is real: one row alone); under eager attention the 2D mask for transformers to build."""
    rows, limits, model = prompts(backend), [3, 12, 7, 5], base_of(backend.loaded.model)
    seen: list[Any] = []
    hook = model.model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["attention_mask"]), with_kwargs=True)
    model.set_attn_implementation(attention)
    try:
        got, _ = run(backend, backend.loaded.model, decoding.KVStore(), rows, limits)
        alone, _ = run(backend, backend.loaded.model, decoding.KVStore(), rows[1:2], [12])
        hook.remove()
        assert got == [transformers_alone(backend, p, n) for p, n in zip(rows, limits)] and alone == [got[1]]
    finally:
        model.set_attn_implementation("sdpa")
        hook.remove()
    # Prefills (several tokens a row) always pass the 2D mask.
    assert {None if m is None else m.dim() for m in seen} == ({2} if attention == "eager" else {2, 4, None})


def test_rows_given_by_more_join_the_running_batch_and_get_what_they_get_alone(backend):
    rows, model = prompts(backend), Recording(backend.loaded.model)
    # Two rows start; after their second step one row joins, then one with a penalty; then none.
    joining = iter([[], [(rows[2], 6, None)], [(rows[3], 9, 1.3)]])
    got, cut = run(backend, model, decoding.KVStore(), rows[:2], [4, 12], more=lambda live, tokens: decoding.Join(next(joining, [])))
    assert cut == set() and got == [transformers_alone(backend, rows[0], 4), transformers_alone(backend, rows[1], 12),
                                    transformers_alone(backend, rows[2], 6), transformers_alone(backend, rows[3], 9, 1.3)]
    steps = [rows_ for rows_, width in model.shapes if width == 1]
    # Each joined after a prefill of its own, between steps: the third step runs 3 rows; row 0
    # (its 4th token) ends there as row 3 joins, so the fourth runs 3 again.
    assert steps[:4] == [2, 2, 3, 3]


def test_per_row_repetition_penalty_equals_transformers_alone(backend):
    rows, limits, penalties = prompts(backend), [10, 10, 10, 10], [1.3, None, 3.0, None]
    got, _ = run(backend, backend.loaded.model, decoding.KVStore(), rows, limits, penalties=penalties)
    assert got == [transformers_alone(backend, p, 10, penalty) for p, penalty in zip(rows, penalties)]
    assert any(got[i] != transformers_alone(backend, rows[i], 10) for i in (0, 2))  # the penalty matters


def test_the_template_prefix_is_computed_once_per_store(backend):
    store, rows = decoding.KVStore(), prompts(backend)
    shared = len(decoding._common_prefix([r[:-1] for r in rows]))
    assert shared >= 10  # "[gMASK] sop [Round 1] 问：将下面的日文翻译成中文："
    model = Recording(backend.loaded.model)
    run(backend, model, store, rows[:2], [4, 4])
    assert model.shapes[0] == (1, shared) and list(store.prefixes) == [tuple(rows[0][:shared])]
    model.shapes.clear()
    alone, _ = run(backend, model, store, rows[2:3], [6])
    assert model.shapes[0] == (1, len(rows[2]) - shared)  # the row's own text only
    assert alone == [transformers_alone(backend, rows[2], 6)]


def test_a_row_cut_short_resumes_from_its_kept_cache(backend):
    store, rows, limits = decoding.KVStore(), prompts(backend), [12, 12, 12, 12]
    full, _ = run(backend, backend.loaded.model, decoding.KVStore(), rows, limits)
    steps = iter(range(100))
    got, cut = run(backend, backend.loaded.model, store, rows, limits, should_stop=lambda: next(steps) == 2)
    assert cut and all(got[i] == full[i][: len(got[i])] for i in cut)
    assert set(store.suspended) == {tuple(rows[i] + got[i]) for i in cut}
    model = Recording(backend.loaded.model)
    rest, _ = run(backend, model, store, [rows[i] + got[i] for i in sorted(cut)],
                  [limits[i] - len(got[i]) for i in sorted(cut)])
    assert [got[i] + r for i, r in zip(sorted(cut), rest)] == [full[i] for i in sorted(cut)]
    assert all(width == 1 for _, width in model.shapes)  # no prefill: every row came from the store
    assert store.suspended == {}


def test_rows_parked_by_more_leave_the_batch_and_continue_from_their_kept_cache(backend):
    store, rows, limits = decoding.KVStore(), prompts(backend), [12, 12, 12, 12]
    full, _ = run(backend, backend.loaded.model, decoding.KVStore(), rows, limits)
    polls, parked = iter(range(100)), []

    def more(live: list[int], tokens: list[list[int]]) -> decoding.Join:
        if next(polls) != 2:
            return decoding.Join()
        parked.extend(row for row in live if row in (1, 3))
        return decoding.Join(park=list(parked))

    model = Recording(backend.loaded.model)
    got, cut = run(backend, model, store, rows, limits, more=more)
    assert parked and cut == set()
    assert all(got[i] == full[i] for i in range(4) if i not in parked)  # the others went on
    assert all(got[i] == full[i][:4] for i in parked)  # parked after the third step (and the prefill's token)
    assert set(store.suspended) == {tuple(rows[i] + got[i]) for i in parked}
    steps = [rows_ for rows_, width in model.shapes if width == 1]
    assert steps[:3] == [4, 4, 4] and max(steps[3:]) <= 4 - len(parked)
    model.shapes.clear()
    rest, _ = run(backend, model, store, [rows[i] + got[i] for i in parked], [limits[i] - len(got[i]) for i in parked])
    assert [got[i] + r for i, r in zip(parked, rest)] == [full[i] for i in parked]
    assert all(width == 1 for _, width in model.shapes) and store.suspended == {}  # no prefill again


def test_rows_with_nothing_to_generate_and_one_token_prompts(backend):
    rows = [[backend.tokenizer.eos_id + 5], prompts(backend)[0]]
    got, cut = run(backend, backend.loaded.model, decoding.KVStore(), rows, [4, 0])
    assert got == [transformers_alone(backend, rows[0], 4), []] and cut == set()


def test_an_editor_waits_for_one_prefill_chunk_not_the_whole_batch(backend):
    rows = [backend.encode(build_prompt(f"{line}{'ね' * n}", template=DEFAULT_TEMPLATE))
            for n in range(3) for line in LINES][: decoding.PREFILL_ROWS + 3]
    limits = [6] * len(rows)
    full, _ = run(backend, backend.loaded.model, decoding.KVStore(), rows, limits)
    store, model = decoding.KVStore(), Recording(backend.loaded.model)
    got, cut = run(backend, model, store, rows, limits, should_stop=lambda: True)
    chunk = decoding.PREFILL_ROWS
    assert cut == set(range(len(rows))) and [shape[0] for shape in model.shapes] == [1, chunk]  # prefix, one chunk
    assert got == [full[i][:1] for i in range(chunk)] + [[] for _ in rows[chunk:]]  # its first tokens
    assert set(store.suspended) == {tuple(rows[i] + got[i]) for i in range(chunk)}  # the chunk keeps its cache
    rest, cut = run(backend, backend.loaded.model, store, [r + g for r, g in zip(rows, got)],
                    [n - len(g) for n, g in zip(limits, got)])
    assert [g + r for g, r in zip(got, rest)] == full and cut == set() and store.suspended == {}


def test_stop_prefill_cuts_between_prefill_chunks_only(backend):
    rows = [backend.encode(build_prompt(f"{line}{'ね' * n}", template=DEFAULT_TEMPLATE))
            for n in range(3) for line in LINES][: decoding.PREFILL_ROWS + 3]
    limits = [6] * len(rows)
    full, _ = run(backend, backend.loaded.model, decoding.KVStore(), rows, limits)
    # One chunk: nothing to cut between chunks, and steps do not consult it.
    one, cut = run(backend, backend.loaded.model, decoding.KVStore(), rows[:4], limits[:4], stop_prefill=lambda: True)
    assert one == full[:4] and cut == set()
    store = decoding.KVStore()
    got, cut = run(backend, backend.loaded.model, store, rows, limits, stop_prefill=lambda: True)
    chunk = decoding.PREFILL_ROWS
    assert cut == set(range(len(rows))) and got == [full[i][:1] for i in range(chunk)] + [[] for _ in rows[chunk:]]
    rest, cut = run(backend, backend.loaded.model, store, [r + g for r, g in zip(rows, got)],
                    [n - len(g) for n, g in zip(limits, got)])
    assert [g + r for g, r in zip(got, rest)] == full and cut == set()


def test_prefill_chunks_grow_to_what_the_budget_fits_by_measured_cost(backend):
    """Asked at each join, not once per call: a call may run a whole job, and a first measurement
    (a cold forward) may overstate a row's cost."""
    store = decoding.KVStore()
    assert store.chunk_rows(0.05) == decoding.PREFILL_ROWS  # nothing measured yet
    rows = [backend.encode(build_prompt(f"{line}{'ね' * n}", template=DEFAULT_TEMPLATE))
            for n in range(3) for line in LINES]
    joining = [backend.encode(build_prompt(f"{prefix}{line}", template=DEFAULT_TEMPLATE))
               for prefix in ("あのね、", "ねえ、", "うん、") for line in LINES]
    polls = []

    def more(live: list[int], tokens: list[list[int]]) -> Join:
        polls.append(len(live))
        if len(polls) > 1:
            return Join()
        store.row_prefill_seconds = 0.05 / 40.5  # measured meanwhile: 40 rows fit the budget
        return Join([(row, 4, None) for row in joining])

    model = Recording(backend.loaded.model)
    call = decoding.Call(list(rows), [4] * len(rows), eos=backend.tokenizer.eos_id, pad=backend.tokenizer.pad_id,
                         prefill_budget_s=0.05, more=more)
    with torch.inference_mode():
        got, _ = decoding.run(model, store, call, torch.device("cpu"))
    # After the template's prefix: the call's rows 8 at a time, the 12 that joined in one forward.
    assert [rows_ for rows_, width in model.shapes if width > 1][1:] == [8, 4, 12]
    assert got == [transformers_alone(backend, p, 4) for p in rows + joining]
    per_row = store.row_prefill_seconds
    assert per_row is not None and per_row > 0
    # A chunk of fewer rows costs mostly a forward's fixed cost; it would overstate a row's.
    store.measured_prefill(decoding.PREFILL_ROWS - 1, 1000.0)
    assert store.row_prefill_seconds == per_row
    assert store.chunk_rows(None) == decoding.PREFILL_ROWS
    assert store.chunk_rows(per_row * 40.5) == 40 and store.chunk_rows(per_row) == decoding.PREFILL_ROWS
