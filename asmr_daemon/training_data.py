"""Training pairs as the model sees them: prompts built like the engine's, answers + eos, batches.

Only the answer and eos carry loss (prompt and padding are labelled -100). Batches are right-padded:
causal attention never lets a real token see the padding after it, and the default positions 0..n-1
are then the ones a left-padded prompt gets at inference.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from asmr_daemon.config import DEFAULT_TEMPLATE
from asmr_daemon.engine.prompts import ContextLine, GlossaryEntry, build_prompt

IGNORE_INDEX = -100


class Tokenizer(Protocol):
    """What training needs from ``asmr_daemon.engine.tokenizer.ChatGLM2Tokenizer``."""

    @property
    def eos_id(self) -> int: ...

    @property
    def pad_id(self) -> int: ...

    def encode_prompt(self, text: str) -> list[int]: ...

    def encode_answer(self, text: str) -> list[int]: ...


@dataclass(frozen=True)
class TrainingPair:
    """One example: a source line (or sentence) and its translation, with optional prompt extras."""

    source: str
    target: str
    context: tuple[ContextLine, ...] = ()
    glossary: tuple[GlossaryEntry, ...] = ()


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]

    @property
    def n_targets(self) -> int:
        # Labels are shifted inside the loss: position i predicts labels[i+1], so label 0 never counts.
        return sum(1 for x in self.labels[1:] if x != IGNORE_INDEX)


def pair_prompt(pair: TrainingPair, template: str = DEFAULT_TEMPLATE) -> str:
    """The prompt text for a pair: exactly what the engine sends for the same segment."""
    return build_prompt(pair.source, template=template, context=pair.context, glossary=pair.glossary)


def encode_pair(tokenizer: Tokenizer, pair: TrainingPair, template: str = DEFAULT_TEMPLATE) -> Example:
    prompt = tokenizer.encode_prompt(pair_prompt(pair, template))
    answer = [*tokenizer.encode_answer(pair.target), tokenizer.eos_id]
    return Example(input_ids=prompt + answer, labels=[IGNORE_INDEX] * len(prompt) + answer)


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: ``input_ids``, ``attention_mask``, ``labels`` (-100 on padding)."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids, dtype=torch.long)
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(e.labels, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def split_pairs(pairs: Sequence[TrainingPair], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic train/validation split of indices (validation in original order)."""
    n = len(pairs)
    if val_fraction <= 0 or n < 2:
        return list(range(n)), []
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    val = sorted(order[:n_val])
    held = set(val)
    return [i for i in range(n) if i not in held], val


def dataset_hash(pairs: Sequence[TrainingPair]) -> str:
    """SHA-256 of the pairs (order included), recorded with an adapter to tell data sets apart."""
    h = hashlib.sha256()
    for pair in pairs:
        record = {
            "source": pair.source,
            "target": pair.target,
            "context": [[c.source, c.translation] for c in pair.context],
            "glossary": [[g.source, g.target, g.note] for g in pair.glossary],
        }
        h.update(json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()
