"""The tiny kit delivers what the rest of the suite relies on: a ChatGLM2-format base that loads
without running its Python files, and a LoRA (both namings) that translates every pair exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kit import Kit

from asmr_daemon.engine.loading import load_model
from asmr_daemon.scripts import read_script
from asmr_daemon.tiny_model import (
    REMOTE_CODE_FILES,
    build_tiny_base,
    corpus_for,
    greedy_translations,
)
from asmr_daemon.training_data import TrainingPair


def _targets(pairs: list[TrainingPair]) -> list[str]:
    return [p.target for p in pairs]


def test_base_dir_is_an_original_chatglm2_checkpoint(tiny_kit: Kit) -> None:
    cfg = json.loads((tiny_kit.base_dir / "config.json").read_text(encoding="utf-8"))
    assert cfg["model_type"] == "chatglm"
    assert cfg["auto_map"]["AutoModel"].startswith("modeling_chatglm.")
    assert (tiny_kit.base_dir / "pytorch_model.bin").is_file()
    assert (tiny_kit.base_dir / "tokenizer.model").is_file()
    for name in REMOTE_CODE_FILES:
        assert (tiny_kit.base_dir / name).is_file()
    native = json.loads((tiny_kit.native_base_dir / "config.json").read_text(encoding="utf-8"))
    assert native["model_type"] == "glm" and native["head_dim"] == 32
    assert native["vocab_size"] % 64 == 0


def test_adapters_use_chatglm2_and_native_names(tiny_kit: Kit) -> None:
    cfg = json.loads((tiny_kit.adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    assert sorted(cfg["target_modules"]) == ["dense", "dense_4h_to_h", "dense_h_to_4h", "query_key_value"]
    assert cfg["base_model_name_or_path"] == "THUDM/chatglm2-6b"
    native = json.loads((tiny_kit.native_adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    assert sorted(native["target_modules"]) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj"]
    )
    meta = json.loads((tiny_kit.native_adapter_dir / "asmr_adapter.json").read_text(encoding="utf-8"))
    assert meta["data"]["pairs"] == len(tiny_kit.pairs)


@pytest.mark.parametrize("which", ["adapter_dir", "native_adapter_dir"])
def test_kit_adapter_reproduces_every_pair(tiny_kit: Kit, which: str) -> None:
    loaded = load_model(tiny_kit.base_dir, getattr(tiny_kit, which), device="cpu", progress=False)
    assert greedy_translations(loaded, tiny_kit.pairs) == _targets(tiny_kit.pairs)


def test_chatglm2_named_adapter_equals_native_one_on_native_base(tiny_kit: Kit) -> None:
    chatglm = load_model(tiny_kit.native_base_dir, tiny_kit.adapter_dir, device="cpu", progress=False)
    native = load_model(tiny_kit.native_base_dir, tiny_kit.native_adapter_dir, device="cpu", progress=False)
    probes = [*tiny_kit.pairs, TrainingPair("知らない文です。", "-")]  # an unseen line too
    assert greedy_translations(chatglm, probes) == greedy_translations(native, probes)


def test_untrained_base_does_not_translate(tiny_kit: Kit) -> None:
    loaded = load_model(tiny_kit.base_dir, None, device="cpu", progress=False)
    got = greedy_translations(loaded, tiny_kit.pairs)
    assert not any(g == t for g, t in zip(got, _targets(tiny_kit.pairs), strict=True))


def test_expected_translation_is_the_pairs_joined_per_line(tiny_kit: Kit) -> None:
    """The hand-written script.zh.txt is exactly what one-translation-per-segment gives."""
    table = {p.source: p.target for p in tiny_kit.pairs}
    doc = read_script(tiny_kit.script)
    built = [
        line.prefix + "".join(table[s] for s in line.segments) + line.suffix if line.is_text else line.raw
        for line in doc.lines
    ]
    assert any(len(line.segments) >= 2 for line in doc.lines)
    assert any(not line.is_text and line.raw.strip() for line in doc.lines)  # sound lines stay verbatim
    assert built == tiny_kit.expected.read_text(encoding="utf-8").splitlines()


def test_kit_model_translates_the_script_segment_by_segment(tiny_kit: Kit) -> None:
    loaded = load_model(tiny_kit.base_dir, tiny_kit.adapter_dir, device="cpu", progress=False)
    doc = read_script(tiny_kit.script)
    segments = [s for line in doc.lines for s in line.segments]
    out = iter(greedy_translations(loaded, [TrainingPair(s, "") for s in segments], max_new_tokens=64))
    built = [line.prefix + "".join(next(out) for _ in line.segments) + line.suffix if line.is_text else line.raw
             for line in doc.lines]
    assert built == tiny_kit.expected.read_text(encoding="utf-8").splitlines()


def test_building_the_base_twice_gives_the_same_files(tmp_path: Path, tiny_kit: Kit) -> None:
    corpus = corpus_for(tiny_kit.pairs)
    for fmt in ("chatglm", "glm"):
        a = build_tiny_base(tmp_path / f"a-{fmt}", corpus, fmt=fmt)
        b = build_tiny_base(tmp_path / f"b-{fmt}", corpus, fmt=fmt)
        names = sorted(p.name for p in a.iterdir())
        assert names == sorted(p.name for p in b.iterdir())
        for name in names:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    kit_files = sorted(p.name for p in tiny_kit.base_dir.iterdir())
    for name in kit_files:
        assert (tmp_path / "a-chatglm" / name).read_bytes() == (tiny_kit.base_dir / name).read_bytes(), name


def test_user_dirs_are_isolated(tmp_path_factory: pytest.TempPathFactory) -> None:
    import os

    base = str(tmp_path_factory.getbasetemp())
    for var in ("HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR", "XDG_CACHE_HOME"):
        assert os.environ[var].startswith(base), var
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_remote_code_was_never_imported(tiny_kit: Kit) -> None:
    # Runs last in this module; the kit fixture re-checks at the end of the session.
    assert not tiny_kit.import_marker.exists()


def test_import_marker_would_reveal_an_import(tmp_path: Path, tiny_kit: Kit) -> None:
    """The stand-in remote code really leaves the marker when executed (so its absence means something)."""
    import runpy

    base = build_tiny_base(tmp_path / "base", corpus_for(tiny_kit.pairs[:3]))
    with pytest.raises(ImportError):
        runpy.run_path(str(base / "modeling_chatglm.py"))
    assert (base / tiny_kit.import_marker.name).is_file()
