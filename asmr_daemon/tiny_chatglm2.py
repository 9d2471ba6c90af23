"""Native GLM -> original ChatGLM2 layout: how the test kit and the demo write ChatGLM2 checkpoints
and Kaggle-style ChatGLM2-named adapters.

The exact reverse of ``engine/chatglm2.py`` (which the product needs; this direction only the kit
does), tested against it round trip.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import GlmConfig, GlmForCausalLM

from asmr_daemon.engine.chatglm2 import is_mqa
from asmr_daemon.engine.chatglm2_names import (
    LORA_KEY,
    NATIVE_LAYER,
    NATIVE_LAYER_MODULES,
    NATIVE_TOP_MODULES,
    PEFT_PREFIX,
    QKV,
    QKV_NATIVE,
    split_key,
)
from asmr_daemon.errors import ModelDirError

Tensor = torch.Tensor

CHATGLM2_AUTO_MAP = {
    "AutoConfig": "configuration_chatglm.ChatGLMConfig",
    "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration",
    "AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
    "AutoModelForSeq2SeqLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
    "AutoModelForSequenceClassification": "modeling_chatglm.ChatGLMForSequenceClassification",
}


def chatglm2_config_from_glm(glm_config: GlmConfig) -> dict:
    """Reverse of ``glm_config_from_chatglm2``: a ChatGLM2-style ``config.json`` dict (used by the test kit)."""
    rope = dict(glm_config.rope_parameters or {})
    if rope.get("partial_rotary_factor", 0.5) != 0.5 or rope.get("rope_theta", 10000.0) != 10000.0:
        raise ValueError("only rope_theta 10000 and partial_rotary_factor 0.5 exist in ChatGLM2")
    cfg: dict[str, Any] = {
        "_name_or_path": "THUDM/chatglm2-6b",
        "model_type": "chatglm",
        "architectures": ["ChatGLMModel"],
        "auto_map": dict(CHATGLM2_AUTO_MAP),
        "add_bias_linear": False,
        "add_qkv_bias": bool(glm_config.attention_bias),
        "apply_query_key_layer_scaling": True,
        "apply_residual_connection_post_layernorm": False,
        "attention_dropout": 0.0,
        "attention_softmax_in_fp32": True,
        "bias_dropout_fusion": True,
        "ffn_hidden_size": glm_config.intermediate_size,
        "fp32_residual_connection": False,
        "hidden_dropout": 0.0,
        "hidden_size": glm_config.hidden_size,
        "kv_channels": glm_config.head_dim,
        "layernorm_epsilon": glm_config.rms_norm_eps,
        "multi_query_attention": glm_config.num_key_value_heads != glm_config.num_attention_heads,
        "multi_query_group_num": glm_config.num_key_value_heads,
        "num_attention_heads": glm_config.num_attention_heads,
        "num_layers": glm_config.num_hidden_layers,
        "original_rope": True,
        "padded_vocab_size": glm_config.vocab_size,
        "post_layer_norm": True,
        "rmsnorm": True,
        "seq_length": glm_config.max_position_embeddings,
        "use_cache": True,
        "torch_dtype": "float16",
        "tie_word_embeddings": False,
        "eos_token_id": glm_config.eos_token_id,
        "pad_token_id": glm_config.pad_token_id,
    }
    if rope.get("rope_type") == "linear":
        cfg["rope_ratio"] = rope["factor"]
    return cfg




def fuse_qkv(qkv: Sequence[Tensor], glm_config: GlmConfig) -> Tensor:
    """Reverse of ``split_qkv``: q, k, v rows -> the fused query_key_value rows."""
    q, k, v = qkv
    if is_mqa(glm_config):
        return torch.cat([q, k, v], dim=0)
    heads = glm_config.num_attention_heads
    hd = q.shape[0] // heads
    parts = [x.reshape(heads, 1, hd, *x.shape[1:]) for x in (q, k, v)]
    return torch.cat(parts, dim=1).reshape(3 * heads * hd, *q.shape[1:]).contiguous()




def chatglm2_state_dict_from_native(sd: dict[str, Tensor], glm_config: GlmConfig) -> dict[str, Tensor]:
    """Reverse of ``convert_chatglm2_state_dict`` (used by the test kit to write ChatGLM2 checkpoints)."""
    out: dict[str, Tensor] = {}
    pending: dict[tuple[str, str], dict[str, Tensor]] = {}
    for key, value in sd.items():
        module, param = split_key(key)
        if module in NATIVE_TOP_MODULES:
            out[f"{NATIVE_TOP_MODULES[module]}.{param}"] = value
            continue
        m = NATIVE_LAYER.match(module)
        if m is None:
            raise ModelDirError(f"unknown tensor {key!r} in the native checkpoint")
        layer, sub = m.groups()
        prefix = f"transformer.encoder.layers.{layer}."
        if sub in QKV_NATIVE:
            pending.setdefault((prefix, param), {})[sub] = value
        elif sub in NATIVE_LAYER_MODULES:
            out[f"{prefix}{NATIVE_LAYER_MODULES[sub]}.{param}"] = value
        else:
            raise ModelDirError(f"unknown tensor {key!r} in the native checkpoint")
    for (prefix, param), parts in pending.items():
        if set(parts) != set(QKV_NATIVE):
            raise ModelDirError(f"{prefix}: q/k/v {param} incomplete in the native checkpoint")
        out[f"{prefix}{QKV}.{param}"] = fuse_qkv([parts[n] for n in QKV_NATIVE], glm_config)
    return out




def chatglm2_adapter_from_native(
    adapter_sd: dict[str, Tensor], adapter_cfg: dict, glm_config: GlmConfig
) -> tuple[dict[str, Tensor], dict]:
    """A native LoRA on q/k/v/o/gate_up/down (rank r) -> an exactly equivalent ChatGLM2-named LoRA.

    For the test kit. query_key_value gets rank 3r: A = rows of (A_q, A_k, A_v) stacked, B = block
    diagonal (B_q, B_k, B_v), so B·A = [B_q A_q; B_k A_k; B_v A_v]. Every other module is zero-padded
    to rank 3r and lora_alpha becomes 3·alpha, so the scaling alpha/r is unchanged.
    """
    if adapter_cfg.get("use_rslora") or adapter_cfg.get("rank_pattern") or adapter_cfg.get("alpha_pattern"):
        raise ValueError("the rank trick supports plain LoRA configs only (no rslora/rank_pattern/alpha_pattern)")
    r = int(adapter_cfg["r"])
    big = 3 * r
    grouped: dict[str, dict[str, Tensor]] = {}
    for key, value in adapter_sd.items():
        m = LORA_KEY.match(key)
        if m is None or m.group("part") not in ("lora_A", "lora_B") or m.group("rest") != ".weight":
            raise ValueError(f"unsupported adapter tensor {key!r}")
        grouped.setdefault(m.group("module"), {})[m.group("part")] = value

    out: dict[str, Tensor] = {}
    qkv: dict[str, dict[str, dict[str, Tensor]]] = {}
    for module, ab in grouped.items():
        prefix = PEFT_PREFIX if module.startswith(PEFT_PREFIX) else ""
        path = module[len(prefix):]
        lm = NATIVE_LAYER.match(path)
        if lm and lm.group(2) in QKV_NATIVE:
            qkv.setdefault(f"{prefix}transformer.encoder.layers.{lm.group(1)}.{QKV}", {})[lm.group(2)] = ab
            continue
        if path in NATIVE_TOP_MODULES:
            new = prefix + NATIVE_TOP_MODULES[path]
        elif lm and lm.group(2) in NATIVE_LAYER_MODULES:
            new = f"{prefix}transformer.encoder.layers.{lm.group(1)}.{NATIVE_LAYER_MODULES[lm.group(2)]}"
        else:
            raise ValueError(f"unsupported adapter module {module!r}")
        a, b = ab["lora_A"], ab["lora_B"]
        out[f"{new}.lora_A.weight"] = torch.cat([a, a.new_zeros(big - r, a.shape[1])], dim=0)
        out[f"{new}.lora_B.weight"] = torch.cat([b, b.new_zeros(b.shape[0], big - r)], dim=1)
    for new, parts in qkv.items():
        if set(parts) != set(QKV_NATIVE):
            raise ValueError(f"{new}: the rank trick needs LoRA on all of q_proj, k_proj and v_proj")
        a_parts = [parts[n]["lora_A"] for n in QKV_NATIVE]
        b_parts = [parts[n]["lora_B"] for n in QKV_NATIVE]
        out[f"{new}.lora_A.weight"] = torch.cat(a_parts, dim=0)
        out[f"{new}.lora_B.weight"] = fuse_qkv(_block_diagonal_rows(b_parts, r), glm_config)

    cfg = copy.deepcopy(adapter_cfg)
    cfg["r"] = big
    cfg["lora_alpha"] = 3 * adapter_cfg.get("lora_alpha", 8)
    cfg["target_modules"] = sorted({_leaf_module(k) for k in out})
    return out, cfg


def _leaf_module(lora_key: str) -> str:
    """'...layers.0.self_attention.query_key_value.lora_A.weight' -> 'query_key_value'."""
    m = LORA_KEY.match(lora_key)
    assert m is not None, lora_key  # keys written above always match
    return split_key(m.group("module"))[1]


def _block_diagonal_rows(b_parts: list[Tensor], r: int) -> list[Tensor]:
    """B_q, B_k, B_v (each out_i x r) -> the row blocks of block-diag(B_q, B_k, B_v) (each out_i x 3r)."""
    blocks = []
    for i, b in enumerate(b_parts):
        block = b.new_zeros(b.shape[0], 3 * r)
        block[:, i * r : (i + 1) * r] = b
        blocks.append(block)
    return blocks


def write_random_chatglm2(out_dir: Path, glm_config: GlmConfig, *, shard_bytes: int = 2 * 2**30,
                          seed: int = 0) -> Path:
    """An original-layout ChatGLM2 checkpoint of random fp16 weights: ``config.json`` and safetensors
    shards with their index, like the hub's ``chatglm2-6b`` (no tokenizer: copy one in).

    Written one layer at a time, so ChatGLM2-6B's full shape (12 GB) needs one layer's memory.
    Random values change neither memory nor speed, which is what the benchmarks measure.
    """
    from safetensors.torch import save_file

    from asmr_daemon.adapter_files import write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in GlmForCausalLM(glm_config).state_dict().items()}
    layers = [[k for k in shapes if k.startswith(f"model.layers.{i}.")] for i in range(glm_config.num_hidden_layers)]
    groups = [["model.embed_tokens.weight"], *layers, ["model.norm.weight", "lm_head.weight"]]
    generator = torch.Generator().manual_seed(seed)
    shards: list[dict[str, Tensor]] = [{}]
    for names in groups:
        native = {k: (torch.ones(shapes[k]) if k.endswith("norm.weight")
                      else torch.randn(shapes[k], generator=generator) * 0.02).half() for k in names}
        for key, tensor in chatglm2_state_dict_from_native(native, glm_config).items():
            size = sum(t.numel() * t.element_size() for t in shards[-1].values())
            if shards[-1] and size + tensor.numel() * tensor.element_size() > shard_bytes:
                save_file(shards[-1], str(out_dir / f"shard-{len(shards)}.tmp"), metadata={"format": "pt"})
                shards[-1] = {k: torch.empty(0) for k in shards[-1]}  # keep the names, free the memory
                shards.append({})
            shards[-1][key] = tensor
    save_file(shards[-1], str(out_dir / f"shard-{len(shards)}.tmp"), metadata={"format": "pt"})
    weight_map = {}
    for number, shard in enumerate(shards, 1):
        name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        (out_dir / f"shard-{number}.tmp").rename(out_dir / name)
        weight_map.update({key: name for key in shard})
    total = sum(int(torch.Size(s).numel()) * 2 for s in shapes.values())
    write_json(out_dir / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})
    write_json(out_dir / "config.json", chatglm2_config_from_glm(glm_config))
    return out_dir
