"""ChatGLM2-6B checkpoints and LoRA adapters <-> transformers' native ``GlmForCausalLM``.

Pure functions on dicts and tensors (no file IO): the loader, the ``convert`` command and the test kit
all go through them, so there is one conversion path. DESIGN §5 lists the verified facts they rely on:
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

CHATGLM2_AUTO_MAP = {
    "AutoConfig": "configuration_chatglm.ChatGLMConfig",
    "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration",
    "AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
    "AutoModelForSeq2SeqLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
    "AutoModelForSequenceClassification": "modeling_chatglm.ChatGLMForSequenceClassification",
}


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


# ---------------------------------------------------------------------------------------------
# Base weights
# ---------------------------------------------------------------------------------------------

_LAYER = re.compile(r"^transformer\.encoder\.layers\.(\d+)\.(.+)$")
_NATIVE_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")

# Per-layer module renames (ChatGLM2 -> native); query_key_value is split separately.
_LAYER_MODULES = {
    "input_layernorm": "input_layernorm",
    "post_attention_layernorm": "post_attention_layernorm",
    "self_attention.dense": "self_attn.o_proj",
    "mlp.dense_h_to_4h": "mlp.gate_up_proj",
    "mlp.dense_4h_to_h": "mlp.down_proj",
}
_NATIVE_LAYER_MODULES = {v: k for k, v in _LAYER_MODULES.items()}
_TOP_MODULES = {
    "transformer.embedding.word_embeddings": "model.embed_tokens",
    "transformer.encoder.final_layernorm": "model.norm",
    "transformer.output_layer": "lm_head",
}
_NATIVE_TOP_MODULES = {v: k for k, v in _TOP_MODULES.items()}
_QKV = "self_attention.query_key_value"
_QKV_NATIVE = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")


def _qkv_sizes(glm_config: GlmConfig) -> list[int]:
    return [
        glm_config.num_attention_heads * glm_config.head_dim,
        glm_config.num_key_value_heads * glm_config.head_dim,
        glm_config.num_key_value_heads * glm_config.head_dim,
    ]


def _is_mqa(glm_config: GlmConfig) -> bool:
    return glm_config.num_key_value_heads != glm_config.num_attention_heads


def split_qkv(t: Tensor, glm_config: GlmConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Split the rows (dim 0) of a fused query_key_value weight, bias or lora_B into q, k, v.

    With multi-query attention the rows are [q heads, k groups, v groups]; without it the original
    code views them per head as [head0: q k v, head1: q k v, ...].
    """
    if _is_mqa(glm_config):
        q, k, v = torch.split(t, _qkv_sizes(glm_config), dim=0)
        return q.contiguous(), k.contiguous(), v.contiguous()
    heads, hd = glm_config.num_attention_heads, glm_config.head_dim
    per_head = t.reshape(heads, 3, hd, *t.shape[1:])
    q, k, v = (per_head[:, i].reshape(heads * hd, *t.shape[1:]).contiguous() for i in range(3))
    return q, k, v


def fuse_qkv(q: Tensor, k: Tensor, v: Tensor, glm_config: GlmConfig) -> Tensor:
    """Reverse of ``split_qkv``."""
    if _is_mqa(glm_config):
        return torch.cat([q, k, v], dim=0)
    heads, hd = glm_config.num_attention_heads, glm_config.head_dim
    parts = [x.reshape(heads, 1, hd, *x.shape[1:]) for x in (q, k, v)]
    return torch.cat(parts, dim=1).reshape(3 * heads * hd, *q.shape[1:]).contiguous()


def _split_key(key: str) -> tuple[str, str]:
    """'a.b.weight' -> ('a.b', 'weight')."""
    module, _, param = key.rpartition(".")
    return module, param


def convert_chatglm2_state_dict(sd: dict[str, Tensor], glm_config: GlmConfig) -> dict[str, Tensor]:
    """ChatGLM2 parameter names -> native ``GlmForCausalLM`` names (DESIGN §5).

    Unknown keys raise ModelDirError naming the key, so a checkpoint we do not understand is never
    loaded half-way.
    """
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if key.endswith("rotary_pos_emb.inv_freq"):
            continue  # recomputed by the native rotary embedding (in fp32)
        module, param = _split_key(key)
        if module in _TOP_MODULES:
            out[f"{_TOP_MODULES[module]}.{param}"] = value
            continue
        m = _LAYER.match(module)
        if m is None:
            raise ModelDirError(f"unknown tensor {key!r} in the ChatGLM2 checkpoint")
        layer, sub = m.groups()
        prefix = f"model.layers.{layer}."
        if sub == _QKV:
            for name, part in zip(_QKV_NATIVE, split_qkv(value, glm_config), strict=True):
                out[f"{prefix}{name}.{param}"] = part
        elif sub in _LAYER_MODULES:
            out[f"{prefix}{_LAYER_MODULES[sub]}.{param}"] = value
        else:
            raise ModelDirError(f"unknown tensor {key!r} in the ChatGLM2 checkpoint")
    return out


def chatglm2_state_dict_from_native(sd: dict[str, Tensor], glm_config: GlmConfig) -> dict[str, Tensor]:
    """Reverse of ``convert_chatglm2_state_dict`` (used by the test kit to write ChatGLM2 checkpoints)."""
    out: dict[str, Tensor] = {}
    pending: dict[tuple[str, str], dict[str, Tensor]] = {}
    for key, value in sd.items():
        module, param = _split_key(key)
        if module in _NATIVE_TOP_MODULES:
            out[f"{_NATIVE_TOP_MODULES[module]}.{param}"] = value
            continue
        m = _NATIVE_LAYER.match(module)
        if m is None:
            raise ModelDirError(f"unknown tensor {key!r} in the native checkpoint")
        layer, sub = m.groups()
        prefix = f"transformer.encoder.layers.{layer}."
        if sub in _QKV_NATIVE:
            pending.setdefault((prefix, param), {})[sub] = value
        elif sub in _NATIVE_LAYER_MODULES:
            out[f"{prefix}{_NATIVE_LAYER_MODULES[sub]}.{param}"] = value
        else:
            raise ModelDirError(f"unknown tensor {key!r} in the native checkpoint")
    for (prefix, param), parts in pending.items():
        if set(parts) != set(_QKV_NATIVE):
            raise ModelDirError(f"{prefix}: q/k/v {param} incomplete in the native checkpoint")
        out[f"{prefix}{_QKV}.{param}"] = fuse_qkv(*(parts[n] for n in _QKV_NATIVE), glm_config)
    return out


# ---------------------------------------------------------------------------------------------
# LoRA adapters
# ---------------------------------------------------------------------------------------------

# Module leaf names peft targets. ChatGLM2 names map to native names; query_key_value fans out to 3.
CHATGLM2_TARGETS: dict[str, tuple[str, ...]] = {
    "query_key_value": ("q_proj", "k_proj", "v_proj"),
    "dense": ("o_proj",),
    "dense_h_to_4h": ("gate_up_proj",),
    "dense_4h_to_h": ("down_proj",),
    "word_embeddings": ("embed_tokens",),
    "output_layer": ("lm_head",),
}
NATIVE_TARGETS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj", "embed_tokens", "lm_head"}
_PEFT_PREFIX = "base_model.model."
# peft key suffixes: lora_A.weight, lora_B.weight, lora_embedding_A, lora_embedding_B
_LORA_KEY = re.compile(r"^(?P<module>.+?)\.(?P<part>lora_A|lora_B|lora_embedding_A|lora_embedding_B)(?P<rest>(\.[^.]+)*)$")


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
    prefix = _PEFT_PREFIX if module.startswith(_PEFT_PREFIX) else ""
    path = module[len(prefix):]
    if path in _TOP_MODULES:
        return [prefix + _TOP_MODULES[path]]
    m = _LAYER.match(path)
    if m is None:
        raise AdapterError(f"adapter tensor for unknown module {module!r}")
    layer, sub = m.groups()
    if sub == _QKV:
        return [f"{prefix}model.layers.{layer}.{name}" for name in _QKV_NATIVE]
    if sub in _LAYER_MODULES and sub not in ("input_layernorm", "post_attention_layernorm"):
        return [f"{prefix}model.layers.{layer}.{_LAYER_MODULES[sub]}"]
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
    return bool(leaves) and any(leaf in CHATGLM2_TARGETS and leaf not in NATIVE_TARGETS for leaf in leaves)


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
    qkv_rows = sum(_qkv_sizes(glm_config))
    # Hidden size first: it is the one mismatch a user can act on (wrong base model for this adapter).
    for key, value in adapter_sd.items():
        if re.search(r"\.(query_key_value|dense_h_to_4h)\.lora_A\.", key) and value.shape[1] != hidden:
            raise AdapterError(
                f"adapter was trained for a model with hidden size {value.shape[1]}, this base has {hidden}"
            )
    out: dict[str, Tensor] = {}
    for key, value in adapter_sd.items():
        m = _LORA_KEY.match(key)
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
    found = sorted({_split_key(_LORA_KEY.match(k).group("module"))[1] for k in out})
    cfg["target_modules"] = found
    for pattern_key in ("rank_pattern", "alpha_pattern"):
        if cfg.get(pattern_key):
            cfg[pattern_key] = {new: v for old, v in cfg[pattern_key].items() for new in _rename_pattern(old)}
    if cfg.get("layers_pattern") in ("encoder.layers", "transformer.encoder.layers"):
        cfg["layers_pattern"] = "layers"
    return out, cfg


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
        m = _LORA_KEY.match(key)
        if m is None or m.group("part") not in ("lora_A", "lora_B") or m.group("rest") != ".weight":
            raise ValueError(f"unsupported adapter tensor {key!r}")
        grouped.setdefault(m.group("module"), {})[m.group("part")] = value

    out: dict[str, Tensor] = {}
    qkv: dict[str, dict[str, dict[str, Tensor]]] = {}
    for module, ab in grouped.items():
        prefix = _PEFT_PREFIX if module.startswith(_PEFT_PREFIX) else ""
        path = module[len(prefix):]
        lm = _NATIVE_LAYER.match(path)
        if lm and lm.group(2) in _QKV_NATIVE:
            qkv.setdefault(f"{prefix}transformer.encoder.layers.{lm.group(1)}.{_QKV}", {})[lm.group(2)] = ab
            continue
        if path in _NATIVE_TOP_MODULES:
            new = prefix + _NATIVE_TOP_MODULES[path]
        elif lm and lm.group(2) in _NATIVE_LAYER_MODULES:
            new = f"{prefix}transformer.encoder.layers.{lm.group(1)}.{_NATIVE_LAYER_MODULES[lm.group(2)]}"
        else:
            raise ValueError(f"unsupported adapter module {module!r}")
        a, b = ab["lora_A"], ab["lora_B"]
        out[f"{new}.lora_A.weight"] = torch.cat([a, a.new_zeros(big - r, a.shape[1])], dim=0)
        out[f"{new}.lora_B.weight"] = torch.cat([b, b.new_zeros(b.shape[0], big - r)], dim=1)
    for new, parts in qkv.items():
        if set(parts) != set(_QKV_NATIVE):
            raise ValueError(f"{new}: the rank trick needs LoRA on all of q_proj, k_proj and v_proj")
        a_parts = [parts[n]["lora_A"] for n in _QKV_NATIVE]
        b_parts = [parts[n]["lora_B"] for n in _QKV_NATIVE]
        out[f"{new}.lora_A.weight"] = torch.cat(a_parts, dim=0)
        out[f"{new}.lora_B.weight"] = fuse_qkv(*_block_diagonal_rows(b_parts, r), glm_config)

    cfg = copy.deepcopy(adapter_cfg)
    cfg["r"] = big
    cfg["lora_alpha"] = 3 * adapter_cfg.get("lora_alpha", 8)
    cfg["target_modules"] = sorted({_split_key(_LORA_KEY.match(k).group("module"))[1] for k in out})
    return out, cfg


def _block_diagonal_rows(b_parts: list[Tensor], r: int) -> list[Tensor]:
    """B_q, B_k, B_v (each out_i x r) -> the row blocks of block-diag(B_q, B_k, B_v) (each out_i x 3r)."""
    blocks = []
    for i, b in enumerate(b_parts):
        block = b.new_zeros(b.shape[0], 3 * r)
        block[:, i * r : (i + 1) * r] = b
        blocks.append(block)
    return blocks


def chatglm2_name_of(native_key: str) -> str:
    """The ChatGLM2 tensor name a native parameter comes from (for error messages)."""
    module, param = _split_key(native_key)
    if module in _NATIVE_TOP_MODULES:
        return f"{_NATIVE_TOP_MODULES[module]}.{param}"
    m = _NATIVE_LAYER.match(module)
    if m is None:
        return native_key
    layer, sub = m.groups()
    sub = _QKV if sub in _QKV_NATIVE else _NATIVE_LAYER_MODULES.get(sub, sub)
    return f"transformer.encoder.layers.{layer}.{sub}.{param}"
