"""``asmr-daemon train`` end to end with the tiny base: the adapter it writes makes ``translate``
reproduce the training targets exactly; validation loss is reported and goes down; corrections
exported from the translation memory train the model into producing the corrected text."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from kit import Kit

from asmr_daemon.adapter_files import METADATA_FILE
from asmr_daemon.cli import main
from asmr_daemon.dataset import read_dataset, write_dataset
from asmr_daemon.engine.compat import base_fingerprint
from asmr_daemon.engine.memory import TranslationMemory
from asmr_daemon.runtime import MEMORY_FILE
from asmr_daemon.tiny_model import TINY_TRAIN
from asmr_daemon.training_data import TrainingPair, split_pairs

# The tiny kit's training settings (TINY_TRAIN: exact greedy output in ~30 epochs), as flags.
TINY_FLAGS = ["--device", "cpu", "--rank", str(TINY_TRAIN.rank), "--alpha", str(TINY_TRAIN.alpha),
              "--lr", str(TINY_TRAIN.lr), "--batch-size", str(TINY_TRAIN.batch_size)]


def twins(pairs: list[TrainingPair]) -> list[TrainingPair]:
    """Each pair followed by a whispered variant with the same meaning.

    Whichever pairs the validation split holds out, the model learns something that predicts them
    (the twin, or the whisper prefix), so their loss must fall; held-out pairs unrelated to the rest
    would only measure how badly a 2-layer model generalises.
    """
    return [x for p in pairs for x in (p, TrainingPair("（囁き）" + p.source, "（低语）" + p.target))]


def translate(tmp_path: Path, kit: Kit, sources: list[str], adapter: Path | None, name: str) -> list[str]:
    """``asmr-daemon translate`` on a script of ``sources`` (one per line), with a fresh state dir
    (a memory shared with training-time corrections would answer instead of the model)."""
    script = tmp_path / f"{name}.txt"
    script.write_text("\n".join(sources) + "\n", encoding="utf-8")
    out_dir = tmp_path / f"{name}-out"
    args = ["translate", str(script), "-o", str(out_dir), "--base-model", str(kit.base_dir), "--device", "cpu",
            "--state-dir", str(tmp_path / f"{name}-state")]
    if adapter is not None:
        args += ["--adapter", str(adapter)]
    assert main(args) == 0
    return (out_dir / f"{name}.zh.txt").read_text(encoding="utf-8").splitlines()


@pytest.mark.slow
def test_train_cli_adapter_translates_its_targets_and_validation_loss_falls(tiny_kit: Kit, tmp_path: Path, capsys) -> None:
    data = twins(tiny_kit.pairs[:14])
    dataset = tmp_path / "data.jsonl"
    write_dataset(dataset, data)
    out = tmp_path / "adapter"
    assert main(["train", str(dataset), "--base-model", str(tiny_kit.base_dir), "--out", str(out),
                 "--epochs", "40", "--val-fraction", "0.2", *TINY_FLAGS]) == 0
    err = capsys.readouterr().err
    assert "validation loss" in err and "losses" in err  # per-epoch lines and the final table

    meta = json.loads((out / METADATA_FILE).read_text(encoding="utf-8"))
    val = meta["val_losses"]
    assert len(val) == 40 and val[-1] < val[0] / 2, val
    assert meta["template"] == TINY_TRAIN.template and meta["data"]["pairs"] == len(data)
    assert meta["split"]["validation"] == 6 and meta["base"]["dir"] == str(tiny_kit.base_dir)
    # The base's fingerprint (not its path) is what later refuses this adapter on another base.
    assert meta["base"]["fingerprint"] == base_fingerprint(tiny_kit.native_base_dir) is not None
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()

    train_idx, _ = split_pairs(data, 0.2, 0)  # the same split the command made
    trained = [data[i] for i in train_idx if not data[i].source.startswith("（囁き）")]
    assert len(trained) >= 8
    sources, targets = [p.source for p in trained], [p.target for p in trained]
    assert translate(tmp_path, tiny_kit, sources, out, "trained") == targets
    untrained = translate(tmp_path, tiny_kit, sources, None, "base")
    assert sum(a == b for a, b in zip(untrained, targets)) == 0


@pytest.mark.slow
def test_corrections_exported_from_memory_train_the_model(tiny_kit: Kit, tmp_path: Path) -> None:
    """Corrections saved through the translation-memory API -> export-dataset (deduplicated) ->
    train (continuing adapter A) -> the model itself now writes the corrected text."""
    state = tmp_path / "state"
    memory = TranslationMemory(state / MEMORY_FILE)
    corrected = {p.source: p.target.replace("哦", "呀").replace("。", "！") for p in tiny_kit.pairs[8:14]}
    for source, target in corrected.items():
        memory.record_correction(source, "first try")
        memory.record_correction(source, target)  # corrected again: the newest one counts
        memory.record_correction(source, target, context_key="somewhere else")  # same pair, other context
    memory.close()

    exported = tmp_path / "corrections.jsonl"
    assert main(["export-dataset", str(exported), "--state-dir", str(state)]) == 0
    assert read_dataset(exported) == [TrainingPair(s, t) for s, t in corrected.items()]

    out = tmp_path / "corrected-adapter"
    assert main(["train", str(exported), "--base-model", str(tiny_kit.base_dir), "--out", str(out),
                 "--resume-from", str(tiny_kit.adapter_dir), "--epochs", "25", *TINY_FLAGS[:2],
                 "--lr", "3e-3", "--batch-size", "2"]) == 0
    sources = list(corrected)
    assert translate(tmp_path, tiny_kit, sources, tiny_kit.adapter_dir, "before") != list(corrected.values())
    assert translate(tmp_path, tiny_kit, sources, out, "after") == list(corrected.values())


def test_quantize_without_bitsandbytes_is_a_clear_error(tiny_kit: Kit, tmp_path: Path, capsys, monkeypatch) -> None:
    # --quantize 4bit itself trains on CPU (tests/training/test_qlora.py); without the package it is one line.
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    dataset = tmp_path / "d.jsonl"
    write_dataset(dataset, tiny_kit.pairs[:2])
    assert main(["train", str(dataset), "--base-model", str(tiny_kit.native_base_dir), "--out", str(tmp_path / "o"),
                 "--device", "cpu", "--quantize", "4bit"]) == 1
    assert "--quantize needs the bitsandbytes package" in capsys.readouterr().err


def test_bad_settings_and_existing_output_are_refused(tiny_kit: Kit, tmp_path: Path, capsys) -> None:
    dataset = tmp_path / "d.jsonl"
    write_dataset(dataset, tiny_kit.pairs[:2])
    base = ["train", str(dataset), "--base-model", str(tiny_kit.base_dir), "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "o"), "--val-fraction", "1.5"]) == 1
    assert "val_fraction=1.5" in capsys.readouterr().err
    assert main([*base, "--out", str(tiny_kit.adapter_dir)]) == 1
    assert "already holds an adapter" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "o"), "--template", "no placeholder"]) == 1
    assert "{source}" in capsys.readouterr().err


def test_chatglm2_module_names_are_accepted() -> None:
    from asmr_daemon.commands.train import target_modules

    assert target_modules("query_key_value, dense") == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert target_modules("q_proj,q_proj,down_proj") == ("q_proj", "down_proj")


def test_flag_defaults_are_the_training_core_defaults() -> None:
    from asmr_daemon.commands.train import DEFAULTS
    from asmr_daemon.training import TrainConfig

    core = TrainConfig()
    for name, value in vars(DEFAULTS).items():
        assert getattr(core, name) == value, name
