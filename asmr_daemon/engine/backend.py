"""The local backend: batched greedy decoding with the resident transformers (+ peft) model.

It only runs the model; the scheduler decides what goes into a batch. A prompt gives the same tokens
alone or in a batch: prompts are left-padded with an attention mask, and ``generate`` derives the
position ids from that mask (``cumsum - 1``), so every prompt's positions start at 0 as when alone.
"""

from __future__ import annotations

import torch
from transformers import GenerationConfig

from asmr_daemon.engine.loading import LoadedModel
from asmr_daemon.engine.tokenizer import SPECIAL_TOKENS


class LocalBackend:
    """Greedy generation on a ``LoadedModel``. Call from the one thread that owns the model."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        # Special tokens the checks look for in outputs (they must never leak into a translation).
        self.special_tokens: tuple[str, ...] = tuple(SPECIAL_TOKENS)

    @property
    def identity(self) -> str:
        """Base + active adapter: part of every translation-memory key, so a new adapter never gets
        another adapter's cached outputs."""
        return f"{self.loaded.identity}+{self.loaded.adapter_identity or 'no-adapter'}"

    def encode(self, prompt: str) -> list[int]:
        """Token ids of a prompt text, as ChatGLM2 builds them ([gMASK], sop, pieces)."""
        return self.tokenizer.encode_prompt(prompt)

    def generate(
        self,
        prompts: list[list[int]],
        *,
        max_new_tokens: list[int] | int,
        repetition_penalty: float | None = None,
    ) -> list[list[int]]:
        """Generated ids per prompt (prompt excluded), cut at the prompt's own eos and its own limit.

        Note: with ``repetition_penalty`` a padded row also penalises the pad id (0, ``<unk>``), a token
        the model does not emit anyway; everything else is identical to running the prompt alone.
        """
        if not prompts:
            return []
        limits = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
        if len(limits) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(limits)} max_new_tokens")
        if any(not p for p in prompts):
            raise ValueError("empty prompt")
        longest = max(limits)
        if longest <= 0:
            return [[] for _ in prompts]
        eos, pad = self.tokenizer.eos_id, self.tokenizer.pad_id
        input_ids, attention_mask = self.tokenizer.batch(prompts)
        device = self.loaded.device
        config = GenerationConfig(
            do_sample=False,
            max_new_tokens=longest,
            eos_token_id=eos,
            pad_token_id=pad,
            repetition_penalty=repetition_penalty if repetition_penalty is not None else 1.0,
        )
        with torch.inference_mode():
            out = self.loaded.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                generation_config=config,
            )
        generated = out[:, input_ids.shape[1] :].tolist()
        results = []
        for ids, limit in zip(generated, limits, strict=True):
            ids = ids[:limit]
            if eos in ids:
                ids = ids[: ids.index(eos)]
            results.append(ids)
        return results

    def decode(self, ids: list[int]) -> str:
        """Text of generated ids (specials dropped)."""
        return self.tokenizer.decode(ids)
