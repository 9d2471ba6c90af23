"""Adapters for another model are refused before the base loads, by ``translate``, ``serve`` and
``doctor`` alike; an adapter trained on another base of the same shape is refused unless
``--allow-other-base``; training records the base's fingerprint (#12 items 1-3)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from kit import Kit

from asmr_daemon.engine.compat import base_fingerprint, check_compatible

from .conftest import cli, one_line_error
from .foreign import renamed_copy

pytestmark = pytest.mark.slow

REFUSALS = {
    "gpt2": "targets c_attn (transformer.h.0.attn.c_attn), a module this base (ChatGLM2/GLM) does not have",
    "hidden64": "was trained for a model with hidden size 64, this base has 128",
    "layers4": "was trained for a model with at least 4 layers, this base has 2",
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_translate_refuses_an_adapter_for_another_model_before_loading(
        name: str, foreign: dict[str, Path], tiny_kit: Kit, tmp_path: Path) -> None:
    result = cli("translate", tiny_kit.script, "-o", tmp_path, "--base-model", tiny_kit.base_dir,
                 "--adapter", foreign[name], "--device", "cpu")
    line = one_line_error(result, "translate")
    assert REFUSALS[name] in line and str(foreign[name]) in line
    assert "use the base model this adapter was trained on" in line  # what to do
    assert "Loaded" not in result.stderr  # refused before the base model was loaded
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_doctor_fails_on_the_same_adapters(name: str, foreign: dict[str, Path], tiny_kit: Kit) -> None:
    result = cli("doctor", "--base-model", tiny_kit.base_dir, "--adapter", foreign[name])
    assert result.returncode == 1, result.stdout
    row = next(line for line in result.stdout.splitlines() if "adapter ↔ base" in line)
    assert "FAIL" in row and REFUSALS[name].split(",")[0][:30] in result.stdout.replace("\n", " ")


def test_serve_refuses_it_before_loading(foreign: dict[str, Path], tiny_kit: Kit, tmp_path: Path) -> None:
    result = cli("serve", "--base-model", tiny_kit.base_dir, "--adapter", foreign["hidden64"],
                 "--inbox", tmp_path / "in", "--outbox", tmp_path / "out", "--state-dir", tmp_path / "state")
    assert REFUSALS["hidden64"] in one_line_error(result, "serve")
    assert "model loaded" not in result.stderr


def test_the_kit_adapters_fit_both_formats_of_their_base(tiny_kit: Kit) -> None:
    for adapter in (tiny_kit.adapter_dir, tiny_kit.native_adapter_dir):
        for base in (tiny_kit.base_dir, tiny_kit.native_base_dir):
            assert "fit this base (hidden 128, 2 layers)" in check_compatible(adapter, base)


def test_doctor_shows_a_row_per_check_and_the_device(tiny_kit: Kit) -> None:
    result = cli("doctor", "--base-model", tiny_kit.base_dir, "--adapter", tiny_kit.adapter_dir, "--device", "cpu")
    assert result.returncode == 0, result.stdout
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 3}
    for name in ("device", "quantization", "base model", "adapter ↔ base", "recorded base", "state dir",
                 "inbox/outbox", "socket"):
        assert name in rows and " ok " in rows[name], (name, result.stdout)
    assert "cpu, requested cpu" in rows["device"]
    assert "trained on this base (fingerprint" in rows["recorded base"]


def test_doctor_fails_when_cuda_is_asked_for_and_missing(tiny_kit: Kit) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    result = cli("doctor", "--base-model", tiny_kit.base_dir, "--device", "cuda")
    assert result.returncode == 1
    assert re.search(r"device\s*│\s*FAIL\s*│ device cuda requested but no CUDA GPU is available", result.stdout)
    translate = cli("translate", tiny_kit.script, "--base-model", tiny_kit.base_dir, "--device", "cuda")
    assert "no CUDA GPU is available (use --device cpu or auto)" in one_line_error(translate, "translate")


def test_doctor_reports_quantizing_an_original_chatglm2_checkpoint(tiny_kit: Kit) -> None:
    # Quantized loading works straight from the original checkpoint (tests/engine_model/test_quantize.py).
    doctor = cli("doctor", "--base-model", tiny_kit.base_dir, "--quantize", "4bit", "--device", "cpu")
    assert re.search(r"quantization\s*│[^\n]*4bit", doctor.stdout), doctor.stdout


# -- provenance ---------------------------------------------------------------------------------


def test_the_fingerprint_is_the_same_for_both_formats_and_differs_for_another_base(
        tiny_kit: Kit, foreign: dict[str, Path]) -> None:
    fingerprint = base_fingerprint(tiny_kit.base_dir)
    assert fingerprint and fingerprint == base_fingerprint(tiny_kit.native_base_dir)
    assert base_fingerprint(foreign["other_base"]) not in (None, fingerprint)
    meta = json.loads((tiny_kit.native_adapter_dir / "asmr_adapter.json").read_text(encoding="utf-8"))
    assert meta["base"]["fingerprint"] == fingerprint


def test_an_adapter_trained_on_another_base_of_the_same_shape_is_refused(
        tiny_kit: Kit, foreign: dict[str, Path], tmp_path: Path) -> None:
    other = foreign["other_base"]
    result = cli("translate", tiny_kit.script, "-o", tmp_path / "out", "--base-model", other,
                 "--adapter", tiny_kit.native_adapter_dir, "--state-dir", tmp_path / "state")
    line = one_line_error(result, "translate")
    mine, theirs = base_fingerprint(tiny_kit.base_dir), base_fingerprint(other)
    assert (f"adapter {tiny_kit.native_adapter_dir} was trained on the base asmr-daemon/tiny-glm (fingerprint "
            f"{mine[:12]}), not on {other} (fingerprint {theirs[:12]})") in line
    assert "--allow-other-base" in line and "Loaded" not in result.stderr
    assert not (tmp_path / "out").exists()
    doctor = cli("doctor", "--base-model", other, "--adapter", tiny_kit.native_adapter_dir)
    assert doctor.returncode == 1 and re.search(r"recorded base\s*│\s*FAIL", doctor.stdout)

    anyway = cli("translate", tiny_kit.script, "-o", tmp_path / "out", "--base-model", other,
                 "--adapter", tiny_kit.native_adapter_dir, "--state-dir", tmp_path / "state", "--allow-other-base")
    assert anyway.returncode == 0, anyway.stderr
    assert (tmp_path / "out" / "script.zh.txt").is_file()


def test_a_peft_adapter_naming_another_hub_model_is_refused(tiny_kit: Kit, tmp_path: Path) -> None:
    """No fingerprint, but peft's base_model_name_or_path says ChatGLM3 and the base's config.json
    says ChatGLM2 (same shapes: only the names tell them apart)."""
    adapter = renamed_copy(tiny_kit.adapter_dir, tmp_path / "glm3-lora", "THUDM/chatglm3-6b")
    result = cli("translate", tiny_kit.script, "-o", tmp_path / "out", "--base-model", tiny_kit.base_dir,
                 "--adapter", adapter)
    line = one_line_error(result, "translate")
    assert f"adapter {adapter} was trained on THUDM/chatglm3-6b, but {tiny_kit.base_dir} is THUDM/chatglm2-6b" in line
    # A path is not an identity: the same name at another path is fine.
    kaggle = renamed_copy(tiny_kit.adapter_dir, tmp_path / "kaggle-lora", "/kaggle/input/chatglm2-6b")
    assert cli("doctor", "--base-model", tiny_kit.base_dir, "--adapter", kaggle).returncode == 0


def test_convert_keeps_the_recorded_base(tiny_kit: Kit, tmp_path: Path) -> None:
    src = tmp_path / "chatglm-named"
    shutil.copytree(tiny_kit.adapter_dir, src)
    result = cli("convert", tiny_kit.base_dir, tmp_path / "native", "--adapter", src, "--adapter-out", tmp_path / "a")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "a" / "asmr_adapter.json").read_bytes() == (src / "asmr_adapter.json").read_bytes()
    doctor = cli("doctor", "--base-model", tmp_path / "native", "--adapter", tmp_path / "a")
    assert doctor.returncode == 0 and "trained on this base (fingerprint" in doctor.stdout, doctor.stdout
