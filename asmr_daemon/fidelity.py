"""How much quantization changes the tiny kit's answers: greedy lines and logits against fp32.

Used by ``benchmarks/memory.py --fidelity`` (which prints it) and by the tests (which assert the
level it measured), so both compare the same thing: the kit's ChatGLM2 base + adapter on its own
training pairs, teacher-forced logits over prompt + target, and greedy translations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from asmr_daemon.engine.loading import LoadedModel, load_model
from asmr_daemon.tiny_model import greedy_translations
from asmr_daemon.training_data import TrainingPair, pair_prompt


@dataclass(frozen=True)
class Fidelity:
    mode: str
    identical_lines: int  # greedy translations equal to fp32's
    lines: int
    max_logit_diff: float  # largest |logit - fp32 logit| over every position of every pair
    max_abs_logit: float  # fp32's largest |logit|, for scale


def teacher_forced_logits(loaded: LoadedModel, pairs: Sequence[TrainingPair]) -> list[torch.Tensor]:
    tok = loaded.tokenizer
    out = []
    with torch.no_grad():
        for pair in pairs:
            ids = tok.encode_prompt(pair_prompt(pair)) + tok.encode_answer(pair.target)
            out.append(loaded.model(input_ids=torch.tensor([ids], device=loaded.device)).logits[0].float().cpu())
    return out


def measure_fidelity(base_dir: Path, adapter_dir: Path, pairs: Sequence[TrainingPair], modes: Sequence[str],
                     device: str = "cpu") -> list[Fidelity]:
    """One ``Fidelity`` per quantization mode (``4bit``/``8bit``) against the fp32 (``none``) load."""
    ref = load_model(base_dir, adapter_dir, device=device, quantize="none", progress=False)
    ref_lines, ref_logits = greedy_translations(ref, pairs), teacher_forced_logits(ref, pairs)
    scale = max(float(r.abs().max()) for r in ref_logits)
    del ref
    results = []
    for mode in modes:
        loaded = load_model(base_dir, adapter_dir, device=device, quantize=mode, progress=False)
        lines = greedy_translations(loaded, pairs)
        diff = max(float((g - r).abs().max()) for g, r in zip(teacher_forced_logits(loaded, pairs), ref_logits,
                                                               strict=True))
        same = sum(a == b for a, b in zip(lines, ref_lines, strict=True))
        results.append(Fidelity(mode, same, len(pairs), diff, scale))
    return results
