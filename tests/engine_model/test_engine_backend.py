"""LocalBackend: batched greedy decoding equals one-by-one decoding; eos and limits cut outputs."""

from __future__ import annotations

import dataclasses

import pytest

from asmr_daemon.engine.backend import LocalBackend
from asmr_daemon.engine.loading import load_model
from asmr_daemon.engine.requests import Unfinished
from asmr_daemon.engine.tokenizer import ChatGLM2Tokenizer

from .kit import (
    random_model,
    random_native_lora,
    write_adapter,
    write_chatglm2_checkpoint,
)

PROMPTS = [
    "おはよう",
    "[Round 1]\n\n问：ゆっくり休んでね。おやすみなさい。\n\n答：",
    "（囁き）ねえ、耳元でささやいてあげる……ふー。",
]


@pytest.fixture(scope="module")
def backend(tmp_path_factory, sp_model, glm_config):
    tmp = tmp_path_factory.mktemp("backend")
    base = random_model(glm_config, seed=11)
    d = write_chatglm2_checkpoint(base, tmp / "m", sp_model)
    sd, cfg = random_native_lora(base, seed=4)
    a = write_adapter(sd, cfg, tmp / "lora")
    return LocalBackend(load_model(d, a, device="cpu", progress=False))


def test_batch_equals_single(backend):
    prompts = [backend.tokenizer.encode_prompt(p) for p in PROMPTS]
    assert len({len(p) for p in prompts}) == 3  # different lengths: real left padding
    singles = [backend.generate([p], max_new_tokens=12)[0] for p in prompts]
    batched = backend.generate(prompts, max_new_tokens=12)
    assert batched == singles
    assert all(len(s) > 0 for s in singles)
    assert all(backend.tokenizer.eos_id not in s for s in singles)


def test_per_prompt_limits(backend):
    prompts = [backend.tokenizer.encode_prompt(p) for p in PROMPTS]
    full = backend.generate(prompts, max_new_tokens=10)
    limited = backend.generate(prompts, max_new_tokens=[3, 10, 5])
    for out, whole, limit in zip(limited, full, [3, 10, 5], strict=True):
        assert out == whole[:limit]
    assert backend.generate(prompts, max_new_tokens=0) == [[], [], []]


class _EosIs(ChatGLM2Tokenizer):
    """The same tokenizer with another eos id (to make a known token the stop token)."""

    def __init__(self, base: ChatGLM2Tokenizer, eos: int) -> None:
        super().__init__(base.sentencepiece)
        self._eos = eos

    @property
    def eos_id(self) -> int:
        return self._eos


def test_eos_stops(backend):
    prompts = [backend.tokenizer.encode_prompt(p) for p in PROMPTS]
    free = backend.generate(prompts, max_new_tokens=8)
    stop = free[1][3]  # the 4th token prompt 1 generates becomes "eos"
    eos_backend = LocalBackend(dataclasses.replace(backend.loaded, tokenizer=_EosIs(backend.tokenizer, stop)))
    out = eos_backend.generate(prompts, max_new_tokens=8)
    for got, whole in zip(out, free, strict=True):
        cut = whole.index(stop) if stop in whole else len(whole)
        assert got == whole[:cut]
    assert len(out[1]) <= 3


def test_decode(backend):
    ids = backend.tokenizer.encode_answer("好好休息吧。") + [backend.tokenizer.eos_id]
    assert backend.decode(ids) == "好好休息吧。"


def test_preemption_keeps_finished_rows_and_continuing_the_others_changes_nothing(backend):
    """``should_stop`` turning True mid-batch: a row already at its own limit is exact, the others
    come back ``Unfinished`` with their tokens so far; continuing them from prompt + those tokens
    gives exactly the uninterrupted output (greedy decoding is deterministic)."""
    prompts = [backend.tokenizer.encode_prompt(p) for p in PROMPTS]
    limits = [2, 12, 12]
    full = backend.generate(prompts, max_new_tokens=limits)
    polls = []

    def stop_after_three_steps() -> bool:
        polls.append(1)
        return len(polls) >= 3

    cut = backend.generate(prompts, max_new_tokens=limits, should_stop=stop_after_three_steps)
    assert len(polls) == 3  # polled once per decoding step, and generation stopped at once
    assert cut[0] == full[0] and not isinstance(cut[0], Unfinished)
    # The prefill's token, then one per step: 4 tokens when the third poll stops the call.
    assert all(isinstance(row, Unfinished) and row == full[i][:4] for i, row in enumerate(cut) if i)
    rest = backend.generate([p + cut[i] for i, p in enumerate(prompts) if i],
                            max_new_tokens=[limits[i] - len(cut[i]) for i in (1, 2)])
    assert [cut[i] + rest[n] for n, i in enumerate((1, 2))] == full[1:]
    assert backend.generate(prompts, max_new_tokens=limits, should_stop=lambda: False) == full


def test_each_row_is_reported_the_step_it_ends(backend):
    """``on_row_done`` sees each row once, the step it ends, with exactly the ids ``generate``
    returns for it; the call goes on for the longer rows."""
    prompts = [backend.tokenizer.encode_prompt(p) for p in PROMPTS]
    limits = [2, 12, 5]
    steps: list[int] = []
    reported: dict[int, tuple[int, list[int]]] = {}

    def stop_never() -> bool:
        steps.append(1)
        return False

    out = backend.generate(prompts, max_new_tokens=limits, should_stop=stop_never,
                           on_row_done=lambda i, ids: reported.setdefault(i, (len(steps), ids)))
    assert {i: ids for i, (_, ids) in reported.items()} == dict(enumerate(out))
    # Row 0 ends in the first step (the prefill gave its first token), before that step's poll;
    # row 2 well before the 12-token row ends.
    assert reported[0][0] == 0 and reported[2][0] == 3
