"""Pure conversion functions: config, base weights and LoRA adapters, both directions."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PeftModel, set_peft_model_state_dict
from transformers import GlmForCausalLM

from asmr_daemon import tiny_chatglm2
from asmr_daemon.engine import chatglm2
from asmr_daemon.errors import AdapterError, ModelDirError

from .kit import logits, random_model, random_native_lora, tiny_config


def _ids(config, n=2, length=12, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, config.vocab_size, (n, length), generator=g)


def _round_trip_model(model):
    cfg = tiny_chatglm2.chatglm2_config_from_glm(model.config)
    sd = tiny_chatglm2.chatglm2_state_dict_from_native(model.state_dict(), model.config)
    sd["transformer.rotary_pos_emb.inv_freq"] = torch.ones(4)
    glm_config = chatglm2.glm_config_from_chatglm2(cfg)
    rebuilt = GlmForCausalLM(glm_config).eval()
    rebuilt.load_state_dict(chatglm2.convert_chatglm2_state_dict(sd, glm_config), strict=True)
    return rebuilt, cfg, sd


def test_config_round_trip(glm_config):
    cfg = tiny_chatglm2.chatglm2_config_from_glm(glm_config)
    assert cfg["model_type"] == "chatglm"
    assert cfg["architectures"] == ["ChatGLMModel"]
    assert cfg["auto_map"]["AutoModelForCausalLM"] == "modeling_chatglm.ChatGLMForConditionalGeneration"
    back = chatglm2.glm_config_from_chatglm2(cfg)
    for field in (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "head_dim", "rms_norm_eps", "max_position_embeddings", "attention_bias",
        "tie_word_embeddings", "pad_token_id", "eos_token_id",
    ):
        assert getattr(back, field) == getattr(glm_config, field), field
    assert back.rope_parameters["partial_rotary_factor"] == 0.5
    assert back.rope_parameters["rope_theta"] == 10000.0


def test_real_chatglm2_config_values():
    cfg = {
        "model_type": "chatglm", "add_bias_linear": False, "add_qkv_bias": True,
        "apply_query_key_layer_scaling": True, "apply_residual_connection_post_layernorm": False,
        "ffn_hidden_size": 13696, "hidden_size": 4096, "kv_channels": 128, "layernorm_epsilon": 1e-05,
        "multi_query_attention": True, "multi_query_group_num": 2, "num_attention_heads": 32, "num_layers": 28,
        "original_rope": True, "padded_vocab_size": 65024, "post_layer_norm": True, "rmsnorm": True,
        "seq_length": 32768, "eos_token_id": 2, "pad_token_id": 0, "pre_seq_len": None,
    }
    c = chatglm2.glm_config_from_chatglm2(cfg)
    assert (c.vocab_size, c.num_key_value_heads, c.head_dim, c.intermediate_size) == (65024, 2, 128, 13696)
    assert c.rope_parameters["rope_type"] == "default"
    c32 = chatglm2.glm_config_from_chatglm2({**cfg, "rope_ratio": 16})
    assert c32.rope_parameters == {**c32.rope_parameters, "rope_type": "linear", "factor": 16.0}


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("pre_seq_len", 128, "P-tuning"),
        ("rmsnorm", False, "LayerNorm"),
        ("apply_residual_connection_post_layernorm", True, "residual"),
        ("post_layer_norm", False, "final layer norm"),
        ("add_bias_linear", True, "biases"),
        ("quantization_bit", 4, "pre-quantized"),
    ],
)
def test_unsupported_base_configs(glm_config, key, value, needle):
    cfg = {**tiny_chatglm2.chatglm2_config_from_glm(glm_config), key: value}
    with pytest.raises(ModelDirError, match=needle) as info:
        chatglm2.glm_config_from_chatglm2(cfg)
    if key == "pre_seq_len":
        assert "LoRA" in str(info.value)


def test_state_dict_round_trip_identical_logits(native_model):
    rebuilt, _, _ = _round_trip_model(native_model)
    ids = _ids(native_model.config)
    assert torch.equal(logits(native_model, ids), logits(rebuilt, ids))


def test_rope_ratio_is_linear_scaling(glm_config):
    """ChatGLM2-32k divides positions by rope_ratio: same as linear scaling of the frequencies."""
    cfg = {**tiny_chatglm2.chatglm2_config_from_glm(glm_config), "rope_ratio": 4}
    c = chatglm2.glm_config_from_chatglm2(cfg)
    rot = GlmForCausalLM(c).model.rotary_emb
    plain = GlmForCausalLM(glm_config).model.rotary_emb
    assert torch.allclose(rot.inv_freq * 4, plain.inv_freq)
    assert tiny_chatglm2.chatglm2_config_from_glm(c)["rope_ratio"] == 4


def test_without_multi_query_attention(sp_size):
    config = tiny_config(sp_size, kv_heads=4)  # multi_query_attention false: per-head q,k,v interleaving
    model = random_model(config)
    assert tiny_chatglm2.chatglm2_config_from_glm(config)["multi_query_attention"] is False
    rebuilt, _, _ = _round_trip_model(model)
    ids = _ids(config)
    assert torch.equal(logits(model, ids), logits(rebuilt, ids))


def test_unknown_tensor_is_named(native_model):
    sd = tiny_chatglm2.chatglm2_state_dict_from_native(native_model.state_dict(), native_model.config)
    sd["transformer.prefix_encoder.embedding.weight"] = torch.zeros(2, 2)
    with pytest.raises(ModelDirError, match="transformer.prefix_encoder.embedding.weight"):
        chatglm2.convert_chatglm2_state_dict(sd, native_model.config)


# --- adapters ---------------------------------------------------------------------------------


def _with_lora(model, sd, cfg):
    cfg = {k: v for k, v in cfg.items() if k != "base_model_name_or_path"}
    peft_model = PeftModel(model, LoraConfig.from_peft_type(**cfg, inference_mode=True))
    result = set_peft_model_state_dict(peft_model, sd)
    assert not result.unexpected_keys
    assert not [k for k in result.missing_keys if "lora_" in k]
    return peft_model.eval()


def test_adapter_round_trip_identical_logits(glm_config):
    """native (rank r) -> ChatGLM2 (rank 3r, block trick) -> native computes the same function.

    Not bitwise: rank 3r changes the length of the matmul reductions (float rounding ~1e-5 in fp32),
    so the comparison runs in float64 where the difference is ~1e-14.
    """
    ids = _ids(glm_config)
    base = random_model(glm_config).double()
    sd, cfg = random_native_lora(base, r=4, alpha=8)
    sd = {k: v.double() for k, v in sd.items()}
    expected = logits(_with_lora(base, sd, cfg), ids)
    assert not torch.allclose(expected, logits(random_model(glm_config).double(), ids))  # the LoRA matters

    glm_sd, glm_cfg = tiny_chatglm2.chatglm2_adapter_from_native(sd, cfg, glm_config)
    assert glm_cfg["r"] == 12 and glm_cfg["lora_alpha"] == 24
    assert sorted(glm_cfg["target_modules"]) == ["dense", "dense_4h_to_h", "dense_h_to_4h", "query_key_value"]
    assert "base_model.model.transformer.encoder.layers.0.self_attention.query_key_value.lora_A.weight" in glm_sd

    back_sd, back_cfg = chatglm2.convert_chatglm2_adapter(glm_sd, glm_cfg, glm_config)
    assert back_cfg["r"] == 12 and back_cfg["lora_alpha"] == 24
    assert sorted(back_cfg["target_modules"]) == sorted(cfg["target_modules"])
    assert set(back_sd) == set(sd)
    got = logits(_with_lora(random_model(glm_config).double(), back_sd, back_cfg), ids)
    assert got.dtype == torch.float64
    assert torch.allclose(got, expected, atol=1e-10, rtol=0), (got - expected).abs().max()


def test_qkv_only_adapter_is_split_exactly(glm_config):
    """The common Kaggle LoRA: target_modules=["query_key_value"]: A copied, B split by rows."""
    base = random_model(glm_config)
    torch.manual_seed(5)
    hidden, rows = glm_config.hidden_size, sum(chatglm2.qkv_sizes(glm_config))
    prefix = "base_model.model.transformer.encoder.layers.{}.self_attention.query_key_value"
    sd = {}
    for layer in range(glm_config.num_hidden_layers):
        sd[prefix.format(layer) + ".lora_A.weight"] = 0.3 * torch.randn(8, hidden)
        sd[prefix.format(layer) + ".lora_B.weight"] = 0.3 * torch.randn(rows, 8)
    cfg = {"peft_type": "LORA", "r": 8, "lora_alpha": 32, "target_modules": ["query_key_value"], "bias": "none",
           "rank_pattern": {"transformer.encoder.layers.1.self_attention.query_key_value": 8}}
    out, out_cfg = chatglm2.convert_chatglm2_adapter(sd, cfg, glm_config)
    assert out_cfg["target_modules"] == ["k_proj", "q_proj", "v_proj"]
    assert set(out_cfg["rank_pattern"]) == {f"model.layers.1.self_attn.{n}" for n in ("q_proj", "k_proj", "v_proj")}
    a = sd[prefix.format(0) + ".lora_A.weight"]
    b = sd[prefix.format(0) + ".lora_B.weight"]
    native = "base_model.model.model.layers.0.self_attn.{}.lora_{}.weight"
    q_rows = glm_config.num_attention_heads * glm_config.head_dim
    assert torch.equal(out[native.format("k_proj", "A")], a)
    assert torch.equal(out[native.format("q_proj", "B")], b[:q_rows])
    _with_lora(base, out, out_cfg)  # loads without missing/unexpected keys


def test_native_adapter_passes_through(glm_config):
    sd, cfg = random_native_lora(random_model(glm_config))
    out, out_cfg = chatglm2.convert_chatglm2_adapter(sd, cfg, glm_config)
    assert out.keys() == sd.keys() and all(out[k] is sd[k] for k in sd)
    assert out_cfg == cfg


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"use_dora": True}, "DoRA"),
        ({"bias": "lora_only"}, "trained biases"),
        ({"bias": "all"}, "trained biases"),
        ({"peft_type": "PREFIX_TUNING"}, "PREFIX_TUNING"),
        ({"peft_type": "P_TUNING"}, "only LoRA"),
        ({"modules_to_save": ["output_layer"]}, "modules_to_save"),
        ({"target_modules": ["query_key_value", "c_attn"]}, "c_attn"),
    ],
)
def test_unsupported_adapters(glm_config, change, needle):
    sd, cfg = random_native_lora(random_model(glm_config))
    with pytest.raises(AdapterError, match=needle):
        chatglm2.convert_chatglm2_adapter(sd, {**cfg, **change}, glm_config)
