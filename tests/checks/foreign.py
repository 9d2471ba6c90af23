"""Real peft adapters for models other than the tiny kit's base, built in a second each: what a
user might point ``--adapter`` at by mistake."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch


def _save_lora(model: torch.nn.Module, targets: list[str], out: Path, base_name: str) -> Path:
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    peft_model.save_pretrained(str(out))
    cfg_path = out / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["base_model_name_or_path"] = base_name
    cfg_path.write_text(json.dumps(cfg), encoding="utf-8")
    return out


def gpt2_lora(out: Path) -> Path:
    """A LoRA on GPT-2's fused ``c_attn`` (the most common LoRA there is)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=128, n_positions=64,
                                                bos_token_id=0, eos_token_id=0))
    return _save_lora(model, ["c_attn"], out, "openai-community/gpt2")


def glm_lora(out: Path, *, hidden_size: int = 128, layers: int = 2, vocab_size: int = 512) -> Path:
    """A native GLM LoRA on q/k/v/o for a GLM of the given hidden size and depth (the kit's base:
    hidden 128, 2 layers, 4 heads of 32, 2 kv heads, ffn 256)."""
    from transformers import GlmConfig, GlmForCausalLM

    torch.manual_seed(0)
    config = GlmConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                       num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                       head_dim=hidden_size // 4, attention_bias=True, tie_word_embeddings=False,
                       pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return _save_lora(GlmForCausalLM(config), ["q_proj", "k_proj", "v_proj", "o_proj"], out, "THUDM/glm-4-9b")


def renamed_copy(adapter: Path, out: Path, base_name: str) -> Path:
    """The same adapter claiming another base by peft's ``base_model_name_or_path`` alone (as one
    trained elsewhere with peft, without ``asmr_adapter.json``)."""
    shutil.copytree(adapter, out)
    (out / "asmr_adapter.json").unlink(missing_ok=True)
    cfg = json.loads((out / "adapter_config.json").read_text(encoding="utf-8"))
    cfg["base_model_name_or_path"] = base_name
    (out / "adapter_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return out
