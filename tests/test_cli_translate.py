"""The public CLI end to end with the tiny real model: translate, convert, doctor, --help."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kit import Kit

pytestmark = pytest.mark.slow


def cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "asmr_daemon", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=os.environ.copy(), timeout=600)


def test_translate_reproduces_the_adapters_training_targets_exactly(tiny_kit: Kit, tmp_path: Path) -> None:
    result = cli("translate", tiny_kit.script, "-o", tmp_path / "out", "--base-model", tiny_kit.base_dir,
                 "--adapter", tiny_kit.adapter_dir, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    output = tmp_path / "out" / "script.zh.txt"
    assert output.read_bytes() == tiny_kit.expected.read_bytes()
    assert not tiny_kit.import_marker.exists()


def test_the_base_model_alone_does_not(tiny_kit: Kit, tmp_path: Path) -> None:
    result = cli("translate", tiny_kit.script, "-o", tmp_path, "--base-model", tiny_kit.base_dir, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    untrained = (tmp_path / "script.zh.txt").read_text(encoding="utf-8").splitlines()
    expected = tiny_kit.expected.read_text(encoding="utf-8").splitlines()
    assert len(untrained) == len(expected)  # still line-aligned
    translatable = [i for i, line in enumerate(tiny_kit.script.read_text(encoding="utf-8").splitlines())
                    if expected[i] != line]
    assert all(untrained[i] != expected[i] for i in translatable)


def test_convert_then_load_gives_the_same_output(tiny_kit: Kit, tmp_path: Path) -> None:
    native, adapter = tmp_path / "native", tmp_path / "native-adapter"
    result = cli("convert", tiny_kit.base_dir, native, "--adapter", tiny_kit.adapter_dir, "--adapter-out", adapter)
    assert result.returncode == 0, result.stderr
    assert json.loads((native / "config.json").read_text())["model_type"] == "glm"
    assert (native / "model.safetensors").is_file() and not list(native.glob("*.py"))
    targets = set(json.loads((adapter / "adapter_config.json").read_text())["target_modules"])
    assert "query_key_value" not in targets and "q_proj" in targets
    result = cli("translate", tiny_kit.script, "-o", tmp_path / "out", "--base-model", native, "--adapter", adapter,
                 "--state-dir", tmp_path / "fresh-state")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "script.zh.txt").read_bytes() == tiny_kit.expected.read_bytes()
    assert not tiny_kit.import_marker.exists()


def test_second_run_is_served_from_translation_memory(tiny_kit: Kit, tmp_path: Path) -> None:
    """Same state dir twice: identical output, and each segment is stored once (the second run
    found every segment in memory instead of translating it again)."""
    state = tmp_path / "state"
    for attempt in range(2):
        result = cli("translate", tiny_kit.script, "-o", tmp_path / f"out{attempt}", "--base-model", tiny_kit.base_dir,
                     "--adapter", tiny_kit.adapter_dir, "--state-dir", state)
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "out0" / "script.zh.txt").read_bytes() == (tmp_path / "out1" / "script.zh.txt").read_bytes()
    import sqlite3

    with sqlite3.connect(state / "memory.sqlite") as db:
        rows = db.execute("SELECT COUNT(*) FROM translations").fetchone()[0]
    segments = len({p.source for p in tiny_kit.pairs if p.source in tiny_kit.script.read_text(encoding="utf-8")})
    assert rows >= segments  # every translated segment stored once, not twice
    assert rows < 2 * segments


def test_translate_reports_a_bad_file_and_translates_the_others(tiny_kit: Kit, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    good = tmp_path / "good.txt"
    shutil.copyfile(tiny_kit.script, good)
    result = cli("translate", empty, good, "--base-model", tiny_kit.base_dir, "--adapter", tiny_kit.adapter_dir)
    assert result.returncode == 1
    assert "empty.txt" in result.stderr and "empty" in result.stderr
    assert not (tmp_path / "empty.zh.txt").exists()
    assert (tmp_path / "good.zh.txt").read_bytes() == tiny_kit.expected.read_bytes()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: (d / "config.json").unlink(), "config.json not found"),
        (lambda d: (d / "config.json").write_text(json.dumps({"model_type": "llama"})), "model_type 'llama'"),
        (lambda d: (d / "tokenizer.model").unlink(), "tokenizer.model"),
        (lambda d: (d / "pytorch_model.bin").unlink(), "no weights in"),
    ],
    ids=["no-config", "wrong-model-type", "no-tokenizer", "no-weights"],
)
def test_a_wrong_model_directory_names_the_file_and_problem(tiny_kit: Kit, tmp_path: Path, mutate, message: str) -> None:
    broken = tmp_path / "model"
    shutil.copytree(tiny_kit.base_dir, broken)
    mutate(broken)
    script = tmp_path / "a.txt"
    shutil.copyfile(tiny_kit.script, script)
    result = cli("translate", script, "--base-model", broken)
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback
    assert not (tmp_path / "a.zh.txt").exists()


def test_an_unsupported_adapter_is_refused(tiny_kit: Kit, tmp_path: Path) -> None:
    dora = tmp_path / "dora"
    shutil.copytree(tiny_kit.adapter_dir, dora)
    config = json.loads((dora / "adapter_config.json").read_text())
    config["use_dora"] = True
    (dora / "adapter_config.json").write_text(json.dumps(config))
    script = tmp_path / "a.txt"
    shutil.copyfile(tiny_kit.script, script)
    result = cli("translate", script, "--base-model", tiny_kit.base_dir, "--adapter", dora)
    assert result.returncode == 1
    assert "DoRA" in result.stderr
    assert not (tmp_path / "a.zh.txt").exists()


def test_doctor_reports_the_model_and_pipeline(tiny_kit: Kit) -> None:
    result = cli("doctor", "--base-model", tiny_kit.base_dir, "--adapter", tiny_kit.adapter_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    for expected in ("torch", "transformers", "peft", "spacy", "japanese pipeline", "original ChatGLM2 checkpoint",
                     "LoRA r=", "config file"):
        assert expected in result.stdout
    assert not tiny_kit.import_marker.exists()


def test_doctor_fails_on_a_wrong_model_dir(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    result = cli("doctor", "--base-model", tmp_path)
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "bert" in result.stdout
