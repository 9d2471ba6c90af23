"""ChatGLM2-6B module names <-> the native ``GlmForCausalLM`` names they became (DESIGN §5).

The one home of the name map: the converters (``chatglm2.py``), the ``train`` command's
``--target-modules``, the remote backend's refusal of ChatGLM2-named adapters and the test kit's
reverse conversion all read it. No torch import, so the CLI parser can use it cheaply.
"""

from __future__ import annotations

import re

LAYER = re.compile(r"^transformer\.encoder\.layers\.(\d+)\.(.+)$")
NATIVE_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")

# Per-layer module renames (ChatGLM2 -> native); query_key_value is split separately.
LAYER_MODULES = {
    "input_layernorm": "input_layernorm",
    "post_attention_layernorm": "post_attention_layernorm",
    "self_attention.dense": "self_attn.o_proj",
    "mlp.dense_h_to_4h": "mlp.gate_up_proj",
    "mlp.dense_4h_to_h": "mlp.down_proj",
}
NATIVE_LAYER_MODULES = {v: k for k, v in LAYER_MODULES.items()}
TOP_MODULES = {
    "transformer.embedding.word_embeddings": "model.embed_tokens",
    "transformer.encoder.final_layernorm": "model.norm",
    "transformer.output_layer": "lm_head",
}
NATIVE_TOP_MODULES = {v: k for k, v in TOP_MODULES.items()}
QKV = "self_attention.query_key_value"
QKV_NATIVE = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")

# Module leaf names peft targets. ChatGLM2 names map to native names; query_key_value fans out to 3.
CHATGLM2_TARGETS: dict[str, tuple[str, ...]] = {
    "query_key_value": ("q_proj", "k_proj", "v_proj"),
    "dense": ("o_proj",),
    "dense_h_to_4h": ("gate_up_proj",),
    "dense_4h_to_h": ("down_proj",),
    "word_embeddings": ("embed_tokens",),
    "output_layer": ("lm_head",),
}
NATIVE_TARGETS = frozenset(name for names in CHATGLM2_TARGETS.values() for name in names)
# Leaf names only ChatGLM2 uses (a native model has none of them).
CHATGLM2_ONLY_TARGETS = frozenset(CHATGLM2_TARGETS) - NATIVE_TARGETS
PEFT_PREFIX = "base_model.model."
# peft key suffixes: lora_A.weight, lora_B.weight, lora_embedding_A, lora_embedding_B
LORA_KEY = re.compile(r"^(?P<module>.+?)\.(?P<part>lora_A|lora_B|lora_embedding_A|lora_embedding_B)(?P<rest>(\.[^.]+)*)$")


def native_target_modules(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """peft target leaf names, ChatGLM2 or native -> native names, in order, without duplicates."""
    out: list[str] = []
    for name in names:
        out.extend(CHATGLM2_TARGETS.get(name, (name,)))
    return tuple(dict.fromkeys(out))


def split_key(key: str) -> tuple[str, str]:
    """'a.b.weight' -> ('a.b', 'weight')."""
    module, _, param = key.rpartition(".")
    return module, param


def chatglm2_name_of(native_key: str) -> str:
    """The ChatGLM2 tensor name a native parameter comes from (for error messages)."""
    module, param = split_key(native_key)
    if module in NATIVE_TOP_MODULES:
        return f"{NATIVE_TOP_MODULES[module]}.{param}"
    m = NATIVE_LAYER.match(module)
    if m is None:
        return native_key
    layer, sub = m.groups()
    sub = QKV if sub in QKV_NATIVE else NATIVE_LAYER_MODULES.get(sub, sub)
    return f"transformer.encoder.layers.{layer}.{sub}.{param}"
