"""``train --quantize 4bit`` (QLoRA) on CPU with the tiny kit, straight from the ChatGLM2 checkpoint:
the adapter is saved in the usual format and loads on an unquantized base as on a quantized one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kit import Kit

from asmr_daemon.cli import main
from asmr_daemon.dataset import write_dataset

pytestmark = pytest.mark.slow


def test_qlora_trains_and_saves_an_ordinary_adapter(tiny_kit: Kit, tmp_path: Path) -> None:
    import bitsandbytes as bnb
    from peft import PeftModel

    from asmr_daemon.engine.loading import load_model

    data = tmp_path / "pairs.jsonl"
    write_dataset(data, tiny_kit.pairs[:8])
    out = tmp_path / "qlora"
    assert main(["train", str(data), "--base-model", str(tiny_kit.base_dir), "--out", str(out), "--device", "cpu",
                 "--quantize", "4bit", "--epochs", "3", "--lr", "3e-3", "--batch-size", "4"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                     "asmr_adapter.json"]
    meta = json.loads((out / "asmr_adapter.json").read_text(encoding="utf-8"))
    assert meta["quantize"] == "4bit"
    assert meta["train_losses"][-1] < meta["train_losses"][0]
    plain = load_model(tiny_kit.base_dir, out, device="cpu", quantize="none", progress=False)
    assert isinstance(plain.model, PeftModel) and plain.quantize is None
    quantized = load_model(tiny_kit.base_dir, out, device="cpu", quantize="4bit", progress=False)
    layer = quantized.model.get_base_model().model.layers[0].self_attn.q_proj
    assert isinstance(layer.base_layer, bnb.nn.Linear4bit)
