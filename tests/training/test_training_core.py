"""train_lora / save_adapter on the tiny native base: labels, determinism, validation, resuming."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
from kit import Kit
from safetensors.torch import load_file

from asmr_daemon.adapter_files import adapter_metadata, save_adapter
from asmr_daemon.engine.loading import load_model
from asmr_daemon.engine.prompts import ContextLine, GlossaryEntry
from asmr_daemon.tiny_model import TINY_TRAIN
from asmr_daemon.training import TrainConfig, evaluate_loss, train_lora
from asmr_daemon.training_data import IGNORE_INDEX, TrainingPair, dataset_hash, encode_pair, split_pairs

QUICK = replace(TINY_TRAIN, epochs=8)


def _base(kit: Kit):
    return load_model(kit.native_base_dir, None, device="cpu", progress=False)


def test_labels_cover_only_the_answer_and_eos(tiny_kit: Kit) -> None:
    tok = _base(tiny_kit).tokenizer
    pair = tiny_kit.pairs[0]
    ex = encode_pair(tok, pair)
    answer = tok.encode_answer(pair.target) + [tok.eos_id]
    prompt_len = len(ex.input_ids) - len(answer)
    assert ex.input_ids[:2] == tok.encode_prompt("x")[:2]  # [gMASK] sop
    assert ex.labels[:prompt_len] == [IGNORE_INDEX] * prompt_len
    assert ex.labels[prompt_len:] == answer == ex.input_ids[prompt_len:]
    assert ex.n_targets == len(answer)


def test_context_and_glossary_go_into_the_prompt(tiny_kit: Kit) -> None:
    tok = _base(tiny_kit).tokenizer
    plain = TrainingPair("次は左耳です。", "接下来是左耳。")
    rich = replace(plain, context=(ContextLine("前の行。", "上一行。"),), glossary=(GlossaryEntry("左耳", "左耳"),))
    assert len(encode_pair(tok, rich).input_ids) > len(encode_pair(tok, plain).input_ids)
    assert dataset_hash([plain]) != dataset_hash([rich])


def test_training_is_deterministic_and_saves_a_peft_adapter(tiny_kit: Kit, tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        loaded = _base(tiny_kit)
        result = train_lora(loaded.model, loaded.tokenizer, tiny_kit.pairs, QUICK, progress=False)
        meta = adapter_metadata(QUICK, tiny_kit.pairs, base_identity="tiny", result=result)
        out = save_adapter(result.model, tmp_path / name, metadata={**meta, "created": None})
        runs.append((result, out))
    (ra, a), (rb, b) = runs
    assert ra.train_losses == rb.train_losses
    assert len(ra.train_losses) == QUICK.epochs and ra.train_losses[-1] < ra.train_losses[0]
    for name in ("adapter_model.safetensors", "adapter_config.json", "asmr_adapter.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    cfg = json.loads((a / "adapter_config.json").read_text(encoding="utf-8"))
    assert cfg["r"] == QUICK.rank and cfg["lora_alpha"] == QUICK.alpha and cfg["peft_type"] == "LORA"
    meta = json.loads((a / "asmr_adapter.json").read_text(encoding="utf-8"))
    assert meta["template"] == QUICK.template
    assert meta["data"]["sha256"] == dataset_hash(tiny_kit.pairs)
    assert meta["hyperparameters"]["lr"] == QUICK.lr
    assert all(k.endswith(("lora_A.weight", "lora_B.weight")) for k in load_file(str(a / "adapter_model.safetensors")))
    # The saved adapter is a regular peft directory the product loads.
    loaded = load_model(tiny_kit.native_base_dir, a, device="cpu", progress=False)
    assert loaded.adapter_identity


def test_other_seed_gives_other_adapter(tiny_kit: Kit) -> None:
    losses = []
    for seed in (0, 1):
        loaded = _base(tiny_kit)
        cfg = replace(QUICK, epochs=2, seed=seed)
        losses.append(train_lora(loaded.model, loaded.tokenizer, tiny_kit.pairs, cfg, progress=False).train_losses)
    assert losses[0] != losses[1]


def test_validation_loss_is_reported_and_decreases(tiny_kit: Kit) -> None:
    # Every pair twice: the validation split holds pairs whose twin is trained on (held-in), so its
    # loss must fall as the adapter memorises them.
    pairs = tiny_kit.pairs * 2
    cfg = replace(TINY_TRAIN, epochs=12, val_fraction=0.2)
    train_idx, val_idx = split_pairs(pairs, cfg.val_fraction, cfg.seed)
    assert split_pairs(pairs, cfg.val_fraction, cfg.seed) == (train_idx, val_idx)
    assert len(val_idx) == round(len(pairs) * 0.2) and not set(train_idx) & set(val_idx)
    reports = []
    loaded = _base(tiny_kit)
    result = train_lora(loaded.model, loaded.tokenizer, pairs, cfg, progress=False, on_epoch=reports.append)
    assert (result.train_size, result.val_size) == (len(train_idx), len(val_idx))
    assert len(result.val_losses) == cfg.epochs == len(reports)
    assert [r.val_loss for r in reports] == result.val_losses
    assert result.val_losses[-1] < 0.5 * result.val_losses[0]
    assert result.val_losses[-1] == min(result.val_losses) or result.val_losses[-1] < 0.2


def test_on_epoch_can_stop_training(tiny_kit: Kit) -> None:
    loaded = _base(tiny_kit)
    result = train_lora(loaded.model, loaded.tokenizer, tiny_kit.pairs, QUICK, progress=False,
                        on_epoch=lambda r: r.epoch == 2)
    assert len(result.train_losses) == 2 and result.stopped_early
    assert result.val_losses == []


@pytest.mark.parametrize("which", ["native_adapter_dir", "adapter_dir"])
def test_resume_from_an_adapter_continues_it(tiny_kit: Kit, which: str) -> None:
    loaded = _base(tiny_kit)
    cfg = replace(TINY_TRAIN, epochs=1, lr=1e-5)
    result = train_lora(loaded.model, loaded.tokenizer, tiny_kit.pairs, cfg, progress=False,
                        resume_from=getattr(tiny_kit, which))
    assert result.train_losses[0] < 0.05  # the trained adapter's weights were loaded, not fresh ones
    fresh = _base(tiny_kit)
    assert evaluate_loss(result.model, loaded.tokenizer, tiny_kit.pairs) < 0.05
    assert evaluate_loss(fresh.model, fresh.tokenizer, tiny_kit.pairs) > 1.0


def test_progress_bar_shows_the_epoch_its_loss_and_every_step(tiny_kit: Kit, capsys: pytest.CaptureFixture[str]) -> None:
    loaded = _base(tiny_kit)
    config = replace(QUICK, epochs=1)
    result = train_lora(loaded.model, loaded.tokenizer, tiny_kit.pairs[:4], config, progress=True)
    steps = math.ceil(math.ceil(result.train_size / config.batch_size) / config.grad_accum)
    shown = capsys.readouterr().out
    assert re.search(rf"epoch 1/1 loss \d+\.\d{{4}}\b.*\b{steps}/{steps}\b", shown), shown


def test_too_long_pairs_are_skipped(tiny_kit: Kit) -> None:
    loaded = _base(tiny_kit)
    pairs = [*tiny_kit.pairs[:4], TrainingPair("長い。" * 200, "长。" * 200)]
    result = train_lora(loaded.model, loaded.tokenizer, pairs, replace(QUICK, epochs=1, max_length=128),
                        progress=False)
    assert result.skipped == 1 and result.train_size == 4


def test_train_lora_refuses_bad_input(tiny_kit: Kit) -> None:
    loaded = _base(tiny_kit)
    with pytest.raises(ValueError, match="no training pairs"):
        train_lora(loaded.model, loaded.tokenizer, [], QUICK, progress=False)
    with pytest.raises(ValueError, match="rank"):
        TrainConfig(rank=0)
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="exotic")
    peft = train_lora(loaded.model, loaded.tokenizer, tiny_kit.pairs[:2], replace(QUICK, epochs=1), progress=False)
    with pytest.raises(ValueError, match="base model"):
        train_lora(peft.model, loaded.tokenizer, tiny_kit.pairs, QUICK, progress=False)


def test_dataset_hash_is_stable_and_order_sensitive(tiny_kit: Kit) -> None:
    pairs = tiny_kit.pairs
    assert dataset_hash(pairs) == dataset_hash(list(pairs))
    assert dataset_hash(pairs) != dataset_hash(pairs[::-1])
    assert len(dataset_hash(pairs)) == 64


def test_resume_from_a_missing_adapter_is_an_adapter_error(tiny_kit: Kit, tmp_path: Path) -> None:
    from asmr_daemon.errors import AdapterError

    loaded = _base(tiny_kit)
    with pytest.raises(AdapterError):
        train_lora(loaded.model, loaded.tokenizer, tiny_kit.pairs, QUICK, progress=False,
                   resume_from=tmp_path / "nope")
