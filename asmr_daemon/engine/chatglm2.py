"""ChatGLM2-6B checkpoints and LoRA adapters -> transformers' native ``GlmForCausalLM``.

Pure functions on dicts and tensors (no file IO): the loader and the ``convert`` command go through
them, so there is one conversion path (the test kit's reverse conversion lives in
``asmr_daemon/tiny_chatglm2.py``; the name map in ``chatglm2_names.py``). DESIGN §5 lists the verified facts they rely on:
conversion is renaming plus one split of the fused ``query_key_value`` projection.

Why not the original remote code: it does not run on transformers 5.x, and executing Python files
from a model directory is something we never do.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch
from transformers import GlmConfig

from asmr_daemon.engine.chatglm2_names import (
    CHATGLM2_TARGETS,
    LAYER,
    LAYER_MODULES,
    LORA_KEY,
    NATIVE_TARGETS,
    PEFT_PREFIX,
    QKV,
    QKV_NATIVE,
    TOP_MODULES,
    split_key,
)
from asmr_daemon.errors import AdapterError, ModelDirError

Tensor = torch.Tensor

# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------

# ChatGLM2 config switches and the value the native model computes. Each was checked against the
# original modeling_chatglm.py; a checkpoint with another value computes a different function.
_REQUIRED_SWITCHES: dict[str, tuple[Any, str]] = {
    "rmsnorm": (True, "it uses LayerNorm instead of RMSNorm"),
    "apply_residual_connection_post_layernorm": (
        False,
        "its residual connections start after the layer norm",
    ),
    "post_layer_norm": (True, "it has no final layer norm"),
    "add_bias_linear": (False, "its dense/MLP layers have biases"),
}
# Switches that do not change the function in inference, so any value is accepted:
# - original_rope: stored by the original RotaryEmbedding but never read;
# - apply_query_key_layer_scaling / attention_softmax_in_fp32: the scaling by layer number is
#   undone before the softmax (numerically equivalent), fp32 softmax is what native does too;
# - fp32_residual_connection, bias_dropout_fusion, *_dropout: precision/training-only switches.



def glm_config_from_chatglm2(cfg: dict) -> GlmConfig:
    """Build the native ``GlmConfig`` computing the same function as a ChatGLM2 ``config.json``.

    Raises ModelDirError for checkpoints the native model cannot reproduce (P-tuning v2 prefixes,
    LayerNorm, post-layernorm residuals, linear biases, pre-quantized int4/int8 weights).
    """
    if cfg.get("pre_seq_len"):
        raise ModelDirError(
            f"config.json has pre_seq_len={cfg['pre_seq_len']}: P-tuning v2 checkpoints are unsupported",
            "use the original ChatGLM2-6B base model with a LoRA adapter instead",
        )
    if cfg.get("quantization_bit"):
        raise ModelDirError(
            f"config.json has quantization_bit={cfg['quantization_bit']}: pre-quantized ChatGLM2 "
            "checkpoints (int4/int8) are unsupported",
            "use the full-precision chatglm2-6b checkpoint, optionally with --quantize 4bit/8bit",
        )
    for key, (wanted, why) in _REQUIRED_SWITCHES.items():
        if key in cfg and bool(cfg[key]) != wanted:
            raise ModelDirError(
                f"config.json has {key}={cfg[key]!r}: unsupported ChatGLM variant ({why})",
                "only ChatGLM2-6B-style checkpoints can be converted",
            )
    try:
        heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        mqa = bool(cfg.get("multi_query_attention", False))
        kv_heads = int(cfg["multi_query_group_num"]) if mqa else heads
        head_dim = int(cfg.get("kv_channels") or hidden // heads)
        rope_ratio = float(cfg.get("rope_ratio", 1) or 1)
        rope: dict[str, Any] = {"rope_theta": 10000.0, "partial_rotary_factor": 0.5}
        # The 32k variant divides positions by rope_ratio = linear scaling of the frequencies.
        rope.update({"rope_type": "linear", "factor": rope_ratio} if rope_ratio != 1 else {"rope_type": "default"})
        eos = cfg.get("eos_token_id", 2)
        return GlmConfig(
            vocab_size=int(cfg["padded_vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(cfg["ffn_hidden_size"]),
            num_hidden_layers=int(cfg["num_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            head_dim=head_dim,
            rms_norm_eps=float(cfg.get("layernorm_epsilon", 1e-5)),
            max_position_embeddings=int(cfg.get("seq_length", 2048)),
            attention_bias=bool(cfg.get("add_qkv_bias", False) or cfg.get("add_bias_linear", False)),
            tie_word_embeddings=False,
            rope_parameters=rope,
            pad_token_id=int(cfg.get("pad_token_id", 0) or 0),
            eos_token_id=eos,
            bos_token_id=cfg.get("bos_token_id", 1),
            architectures=["GlmForCausalLM"],
        )
    except KeyError as exc:
        raise ModelDirError(f"config.json of the ChatGLM2 checkpoint lacks {exc.args[0]!r}") from exc


# ---------------------------------------------------------------------------------------------
# Base weights
# ---------------------------------------------------------------------------------------------



def _head_dim(glm_config: GlmConfig) -> int:
    return int(glm_config.head_dim or glm_config.hidden_size // glm_config.num_attention_heads)


def qkv_sizes(glm_config: GlmConfig) -> list[int]:
    hd, kv_heads = _head_dim(glm_config), int(glm_config.num_key_value_heads or glm_config.num_attention_heads)
    return [glm_config.num_attention_heads * hd, kv_heads * hd, kv_heads * hd]


def is_mqa(glm_config: GlmConfig) -> bool:
    return glm_config.num_key_value_heads != glm_config.num_attention_heads


def split_qkv(t: Tensor, glm_config: GlmConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Split the rows (dim 0) of a fused query_key_value weight, bias or lora_B into q, k, v.

    With multi-query attention the rows are [q heads, k groups, v groups]; without it the original
    code views them per head as [head0: q k v, head1: q k v, ...].
    """
    if is_mqa(glm_config):
        q, k, v = torch.split(t, qkv_sizes(glm_config), dim=0)
        return q.contiguous(), k.contiguous(), v.contiguous()
    heads, hd = glm_config.num_attention_heads, _head_dim(glm_config)
    per_head = t.reshape(heads, 3, hd, *t.shape[1:])
    q, k, v = (per_head[:, i].reshape(heads * hd, *t.shape[1:]).contiguous() for i in range(3))
    return q, k, v


def convert_chatglm2_state_dict(sd: dict[str, Tensor], glm_config: GlmConfig) -> dict[str, Tensor]:
    """ChatGLM2 parameter names -> native ``GlmForCausalLM`` names (DESIGN §5).

    Unknown keys raise ModelDirError naming the key, so a checkpoint we do not understand is never
    loaded half-way.
    """
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if key.endswith("rotary_pos_emb.inv_freq"):
            continue  # recomputed by the native rotary embedding (in fp32)
        module, param = split_key(key)
        if module in TOP_MODULES:
            out[f"{TOP_MODULES[module]}.{param}"] = value
            continue
        m = LAYER.match(module)
        if m is None:
            raise ModelDirError(f"unknown tensor {key!r} in the ChatGLM2 checkpoint")
        layer, sub = m.groups()
        prefix = f"model.layers.{layer}."
        if sub == QKV:
            for name, part in zip(QKV_NATIVE, split_qkv(value, glm_config), strict=True):
                out[f"{prefix}{name}.{param}"] = part
        elif sub in LAYER_MODULES:
            out[f"{prefix}{LAYER_MODULES[sub]}.{param}"] = value
        else:
            raise ModelDirError(f"unknown tensor {key!r} in the ChatGLM2 checkpoint")
    return out


# ---------------------------------------------------------------------------------------------
# LoRA adapters
# ---------------------------------------------------------------------------------------------



def check_adapter_config(adapter_cfg: dict) -> None:
    """Refuse adapters whose function the converted LoRA would not reproduce, saying exactly why."""
    peft_type = str(adapter_cfg.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        hint = "P-tuning/prefix tuning cannot be converted; train a LoRA instead"
        raise AdapterError(f"adapter_config.json has peft_type {peft_type}: only LoRA adapters are supported", hint)
    if adapter_cfg.get("use_dora"):
        raise AdapterError(
            "adapter_config.json has use_dora: true: DoRA adapters are unsupported", "train a plain LoRA"
        )
    bias = adapter_cfg.get("bias", "none")
    if bias not in (None, "none"):
        raise AdapterError(
            f"adapter_config.json has bias {bias!r}: adapters with trained biases are unsupported",
            'train with bias="none"',
        )
    if adapter_cfg.get("modules_to_save"):
        raise AdapterError(
            f"adapter_config.json has modules_to_save {adapter_cfg['modules_to_save']}: "
            "adapters that save whole modules are unsupported",
            "train a LoRA without modules_to_save",
        )


def _target_leaves(adapter_cfg: dict) -> list[str] | None:
    targets = adapter_cfg.get("target_modules")
    if targets is None or isinstance(targets, str):
        return None  # a regex: judged from the weights instead
    return [str(t).rsplit(".", 1)[-1] for t in targets]


def _rename_chatglm2_module(module: str) -> list[str]:
    """A ChatGLM2 module path (with or without the peft prefix) -> native module path(s)."""
    prefix = PEFT_PREFIX if module.startswith(PEFT_PREFIX) else ""
    path = module[len(prefix):]
    if path in TOP_MODULES:
        return [prefix + TOP_MODULES[path]]
    m = LAYER.match(path)
    if m is None:
        raise AdapterError(f"adapter tensor for unknown module {module!r}")
    layer, sub = m.groups()
    if sub == QKV:
        return [f"{prefix}model.layers.{layer}.{name}" for name in QKV_NATIVE]
    if sub in LAYER_MODULES and sub not in ("input_layernorm", "post_attention_layernorm"):
        return [f"{prefix}model.layers.{layer}.{LAYER_MODULES[sub]}"]
    raise AdapterError(f"adapter tensor for unsupported module {module!r}")


def _rename_pattern(pattern: str) -> list[str]:
    """Rename a rank_pattern/alpha_pattern key (a module-name pattern) to native name(s)."""
    out = pattern.replace("transformer.encoder.layers", "model.layers")
    out = out.replace("transformer.embedding.word_embeddings", "model.embed_tokens")
    out = out.replace("transformer.output_layer", "lm_head")
    out = out.replace("self_attention.dense", "self_attn.o_proj").replace("self_attention.", "self_attn.")
    out = re.sub(r"\bdense_h_to_4h\b", "gate_up_proj", out)
    out = re.sub(r"\bdense_4h_to_h\b", "down_proj", out)
    out = re.sub(r"\bdense\b", "o_proj", out)
    if "query_key_value" in out:
        return [out.replace("query_key_value", n) for n in ("q_proj", "k_proj", "v_proj")]
    return [out]


def _is_chatglm2_adapter(adapter_sd: dict[str, Tensor], leaves: list[str] | None) -> bool:
    if any("transformer.encoder." in k or "transformer.output_layer" in k or "transformer.embedding" in k for k in adapter_sd):
        return True
    return any(leaf in CHATGLM2_TARGETS and leaf not in NATIVE_TARGETS for leaf in leaves or ())


def convert_chatglm2_adapter(
    adapter_sd: dict[str, Tensor], adapter_cfg: dict, glm_config: GlmConfig
) -> tuple[dict[str, Tensor], dict]:
    """A peft LoRA trained on ChatGLM2 module names -> the same LoRA on native GLM names.

    ``lora_A`` of query_key_value is copied to q, k and v (they all see the same input); ``lora_B`` is
    split by rows like the weight. r and alpha are unchanged, so the scaling is unchanged. An adapter
    already in native names passes through (after the same checks).
    """
    check_adapter_config(adapter_cfg)
    leaves = _target_leaves(adapter_cfg)
    if leaves is not None:
        unknown = [t for t in leaves if t not in CHATGLM2_TARGETS and t not in NATIVE_TARGETS]
        if unknown:
            raise AdapterError(
                f"adapter_config.json targets {unknown}: neither ChatGLM2 modules "
                f"({', '.join(CHATGLM2_TARGETS)}) nor native GLM modules ({', '.join(sorted(NATIVE_TARGETS))})"
            )
    if not _is_chatglm2_adapter(adapter_sd, leaves):
        return dict(adapter_sd), copy.deepcopy(adapter_cfg)

    hidden = glm_config.hidden_size
    qkv_rows = sum(qkv_sizes(glm_config))
    # Hidden size first: it is the one mismatch a user can act on (wrong base model for this adapter).
    for key, value in adapter_sd.items():
        if re.search(r"\.(query_key_value|dense_h_to_4h)\.lora_A\.", key) and value.shape[1] != hidden:
            raise AdapterError(
                f"adapter was trained for a model with hidden size {value.shape[1]}, this base has {hidden}"
            )
    out: dict[str, Tensor] = {}
    for key, value in adapter_sd.items():
        m = LORA_KEY.match(key)
        if m is None:
            raise AdapterError(f"adapter tensor {key!r} is not a LoRA weight")
        module, part, rest = m.group("module"), m.group("part"), m.group("rest")
        targets = _rename_chatglm2_module(module)
        if len(targets) == 3:  # query_key_value
            if part == "lora_A":
                parts = (value, value, value)
            else:
                if value.shape[0] != qkv_rows:
                    raise AdapterError(
                        f"adapter tensor {key} has {value.shape[0]} output rows, this base's "
                        f"query_key_value has {qkv_rows}: it was trained for another model"
                    )
                parts = split_qkv(value, glm_config)
            for target, t in zip(targets, parts, strict=True):
                out[f"{target}.{part}{rest}"] = t.clone()
        else:
            out[f"{targets[0]}.{part}{rest}"] = value

    cfg = copy.deepcopy(adapter_cfg)
    found = sorted({split_key(m.group("module"))[1] for k in out if (m := LORA_KEY.match(k))})
    cfg["target_modules"] = found
    for pattern_key in ("rank_pattern", "alpha_pattern"):
        if cfg.get(pattern_key):
            cfg[pattern_key] = {new: v for old, v in cfg[pattern_key].items() for new in _rename_pattern(old)}
    if cfg.get("layers_pattern") in ("encoder.layers", "transformer.encoder.layers"):
        cfg["layers_pattern"] = "layers"
    return out, cfg


