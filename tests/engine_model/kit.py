"""Tiny-model test kit: a SentencePiece tokenizer trained in seconds, a tiny random GLM, and writers
for ChatGLM2-format and native checkpoints/adapters (through the same conversion functions as the
product)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import GlmConfig, GlmForCausalLM

from asmr_daemon import tiny_chatglm2, tiny_model

LINES = [
    "お兄ちゃん、おはよう。今日もいい天気だね。",
    "（囁き）ねえ、耳元でささやいてあげる……ふー。",
    "【トラック1】お目覚めの時間です。",
    "SE：ドアの開く音",
    "哥哥，早上好。今天天气也很好呢。",
    "（耳语）呐，我在你耳边悄悄说……呼。",
    "【音轨1】该起床了。",
    "音效：开门的声音",
    "ゆっくり休んでね。おやすみなさい。",
    "好好休息吧。晚安。",
    "[Round 1]\n\n问：翻译成中文\n\n答：",
] * 4


def train_sentencepiece(path: Path, vocab_size: int = 420) -> Path:
    """A tiny unigram model with ChatGLM2-like settings, trained on ``LINES`` (the product's trainer)."""
    return tiny_model.train_sentencepiece(LINES, path, vocab_size)


def tiny_config(sp_size: int, *, hidden: int = 64, heads: int = 4, kv_heads: int = 2, head_dim: int = 16) -> GlmConfig:
    """Smaller than the product's tiny model: these tests need only random weights, not learning."""
    return tiny_model.tiny_glm_config(sp_size, hidden_size=hidden, intermediate_size=128, num_attention_heads=heads,
                                      num_key_value_heads=kv_heads, head_dim=head_dim)


def random_model(config: GlmConfig, seed: int = 0) -> GlmForCausalLM:
    """Random weights wide enough (std 0.2, norms around 1) that greedy choices have clear margins."""
    torch.manual_seed(seed)
    model = GlmForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    return model.eval()


def write_chatglm2_checkpoint(
    model: GlmForCausalLM, directory: Path, sp_model: Path, *, fmt: str = "bin", shards: int = 1
) -> Path:
    """Write ``model`` as an original ChatGLM2 checkpoint: config.json, weights, tokenizer.model."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = tiny_chatglm2.chatglm2_config_from_glm(model.config)
    (directory / "config.json").write_text(json.dumps(cfg, indent=2))
    sd = tiny_chatglm2.chatglm2_state_dict_from_native(model.state_dict(), model.config)
    sd = {k: v.clone().contiguous() for k, v in sd.items()}
    sd["transformer.rotary_pos_emb.inv_freq"] = torch.ones(model.config.head_dim // 4)
    keys = sorted(sd)
    suffix = "bin" if fmt == "bin" else "safetensors"
    if shards == 1:
        name = "pytorch_model.bin" if fmt == "bin" else "model.safetensors"
        _save(sd, directory / name, fmt)
    else:
        weight_map = {}
        for i in range(shards):
            part = keys[i::shards]
            base = "pytorch_model" if fmt == "bin" else "model"
            name = f"{base}-{i + 1:05d}-of-{shards:05d}.{suffix}"
            _save({k: sd[k] for k in part}, directory / name, fmt)
            weight_map.update({k: name for k in part})
        index = "pytorch_model.bin.index.json" if fmt == "bin" else "model.safetensors.index.json"
        (directory / index).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (directory / "tokenizer.model").write_bytes(sp_model.read_bytes())
    return directory


def _save(sd: dict, path: Path, fmt: str) -> None:
    if fmt == "bin":
        torch.save(sd, path)
    else:
        save_file(sd, str(path))


def random_native_lora(model: GlmForCausalLM, r: int = 4, alpha: int = 8, seed: int = 1) -> tuple[dict, dict]:
    """A peft-format native LoRA (q/k/v/o/gate_up/down) with random non-zero A and B."""
    torch.manual_seed(seed)
    sd = {}
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj"):
            sd[f"base_model.model.{name}.lora_A.weight"] = 0.3 * torch.randn(r, module.in_features)
            sd[f"base_model.model.{name}.lora_B.weight"] = 0.3 * torch.randn(module.out_features, r)
    cfg = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "bias": "none",
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj"],
        "use_dora": False,
        "use_rslora": False,
        "fan_in_fan_out": False,
        "modules_to_save": None,
        "base_model_name_or_path": "tiny",
    }
    return sd, cfg


def write_adapter(sd: dict, cfg: dict, directory: Path, fmt: str = "safetensors") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, str(directory / "adapter_model.safetensors"))
    else:
        torch.save(sd, directory / "adapter_model.bin")
    return directory


def logits(model, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=input_ids).logits
