"""load_model / attach_adapter on tiny checkpoints written by the test kit."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from asmr_daemon import tiny_chatglm2
from asmr_daemon.engine.adapters import attach_adapter
from asmr_daemon.engine.loading import LoadedModel, load_model
from asmr_daemon.errors import AdapterError, DeviceError, ModelDirError

from .kit import (
    logits,
    random_model,
    random_native_lora,
    tiny_config,
    write_adapter,
    write_chatglm2_checkpoint,
)

TRAP = """
import pathlib
pathlib.Path(__file__).with_name("IMPORTED").write_text("modeling_chatglm.py was imported")
raise RuntimeError("remote code must never run")
"""


def _ids(config):
    return torch.randint(3, config.vocab_size, (2, 10), generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize(("fmt", "shards"), [("bin", 1), ("safetensors", 3), ("bin", 2)])
def test_chatglm2_dir_loads_without_running_its_code(tmp_path, sp_model, native_model, fmt, shards):
    d = write_chatglm2_checkpoint(native_model, tmp_path / "chatglm2", sp_model, fmt=fmt, shards=shards)
    (d / "modeling_chatglm.py").write_text(TRAP)
    (d / "configuration_chatglm.py").write_text(TRAP)
    (d / "tokenization_chatglm.py").write_text(TRAP)
    loaded = load_model(d, None, device="cpu", progress=False)
    assert isinstance(loaded, LoadedModel)
    assert loaded.device == torch.device("cpu") and loaded.dtype == torch.float32
    assert loaded.memory_bytes > 0 and len(loaded.identity) == 64 and loaded.adapter_identity is None
    ids = _ids(native_model.config)
    assert torch.equal(logits(loaded.model, ids), logits(native_model, ids))
    assert not (d / "IMPORTED").exists()
    trap_modules = ("modeling_chatglm", "configuration_chatglm", "tokenization_chatglm")
    assert not [name for name in sys.modules if name.rsplit(".", 1)[-1] in trap_modules]


def test_identity_is_stable_and_cheap(tmp_path, sp_model, native_model):
    d = write_chatglm2_checkpoint(native_model, tmp_path / "m", sp_model)
    a = load_model(d, None, device="cpu", progress=False).identity
    assert load_model(d, None, device="cpu", progress=False).identity == a
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "seq_length": 1024}))
    assert load_model(d, None, device="cpu", progress=False).identity != a


def test_progress_prints_memory_line(tmp_path, sp_model, native_model, capsys):
    d = write_chatglm2_checkpoint(native_model, tmp_path / "m", sp_model)
    load_model(d, None, device="cpu", progress=True)
    assert "GiB" in capsys.readouterr().err


def test_adapter_attached_unmerged_and_second_adapter(tmp_path, sp_model, glm_config):
    base = random_model(glm_config)
    d = write_chatglm2_checkpoint(base, tmp_path / "m", sp_model)
    sd, cfg = random_native_lora(base, seed=1)
    glm_sd, glm_cfg = tiny_chatglm2.chatglm2_adapter_from_native(sd, cfg, glm_config)
    a1 = write_adapter(glm_sd, glm_cfg, tmp_path / "lora-chatglm2")
    sd2, cfg2 = random_native_lora(base, seed=2)
    a2 = write_adapter(sd2, cfg2, tmp_path / "lora-native", fmt="bin")

    loaded = load_model(d, a1, device="cpu", progress=False)
    assert loaded.adapter_identity and loaded.adapter_dir == a1
    ids = _ids(glm_config)
    with_first = logits(loaded.model, ids)
    assert not torch.allclose(with_first, logits(base, ids))
    with loaded.model.disable_adapter():  # un-merged: the base is still there
        assert torch.equal(logits(loaded.model, ids), logits(base, ids))

    ident2 = attach_adapter(loaded, a2, "second")
    assert ident2 == loaded.adapter_identity != ""
    assert loaded.model.active_adapter == "second"
    with_second = logits(loaded.model, ids)
    assert not torch.allclose(with_first, with_second)
    loaded.model.set_adapter("default")
    assert torch.equal(logits(loaded.model, ids), with_first)


def _chatglm_dir(tmp_path, sp_model, model):
    return write_chatglm2_checkpoint(model, tmp_path / "m", sp_model)


def test_missing_config(tmp_path, sp_model, native_model):
    d = _chatglm_dir(tmp_path, sp_model, native_model)
    (d / "config.json").unlink()
    with pytest.raises(ModelDirError, match="config.json"):
        load_model(d, None, device="cpu", progress=False)


def test_wrong_model_type(tmp_path, sp_model, native_model):
    d = _chatglm_dir(tmp_path, sp_model, native_model)
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ModelDirError, match=r"config.json has model_type 'llama'; supported: glm, chatglm"):
        load_model(d, None, device="cpu", progress=False)


def test_missing_tokenizer(tmp_path, sp_model, native_model):
    d = _chatglm_dir(tmp_path, sp_model, native_model)
    (d / "tokenizer.model").unlink()
    with pytest.raises(ModelDirError, match="tokenizer.model"):
        load_model(d, None, device="cpu", progress=False)


def test_missing_weights(tmp_path, sp_model, native_model):
    d = _chatglm_dir(tmp_path, sp_model, native_model)
    (d / "pytorch_model.bin").unlink()
    with pytest.raises(ModelDirError, match="pytorch_model.bin"):
        load_model(d, None, device="cpu", progress=False)


def test_truncated_state_dict(tmp_path, sp_model, native_model):
    d = _chatglm_dir(tmp_path, sp_model, native_model)
    sd = torch.load(d / "pytorch_model.bin", weights_only=True)
    del sd["transformer.encoder.layers.1.mlp.dense_4h_to_h.weight"]
    torch.save(sd, d / "pytorch_model.bin")
    with pytest.raises(ModelDirError, match=r"pytorch_model.bin lacks tensor transformer.encoder.layers.1.mlp.dense_4h_to_h.weight"):
        load_model(d, None, device="cpu", progress=False)


def test_shape_mismatch_names_file_and_tensor(tmp_path, sp_model, native_model):
    d = _chatglm_dir(tmp_path, sp_model, native_model)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "ffn_hidden_size": 96}))
    with pytest.raises(ModelDirError, match=r"pytorch_model.bin: tensor 'transformer.encoder.layers.\d.mlp.dense_"):
        load_model(d, None, device="cpu", progress=False)


def test_adapter_for_other_hidden_size(tmp_path, sp_model, sp_size, native_model):
    d = _chatglm_dir(tmp_path, sp_model, native_model)
    other = random_model(tiny_config(sp_size, hidden=32, head_dim=8))
    sd, cfg = random_native_lora(other)
    a = write_adapter(sd, cfg, tmp_path / "native-lora")
    with pytest.raises(AdapterError, match=r"adapter_model.safetensors was trained for a model with hidden size 32, this base has 64"):
        load_model(d, a, device="cpu", progress=False)
    glm_sd, glm_cfg = tiny_chatglm2.chatglm2_adapter_from_native(sd, cfg, other.config)
    a2 = write_adapter(glm_sd, glm_cfg, tmp_path / "glm-lora")
    with pytest.raises(AdapterError, match=r"adapter_model.safetensors: .*hidden size 32, this base has 64"):
        load_model(d, a2, device="cpu", progress=False)


def test_adapter_dir_problems(tmp_path, sp_model, native_model):
    d = _chatglm_dir(tmp_path, sp_model, native_model)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterError, match="adapter_config.json"):
        load_model(d, tmp_path / "empty", device="cpu", progress=False)
    sd, cfg = random_native_lora(native_model)
    a = write_adapter(sd, {**cfg, "use_dora": True}, tmp_path / "dora")
    with pytest.raises(AdapterError, match="DoRA"):
        load_model(d, a, device="cpu", progress=False)


def test_devices_and_quantization(tmp_path, sp_model, native_model):
    d = _chatglm_dir(tmp_path, sp_model, native_model)
    # 4bit/8bit run on CPU too (tests/engine_model/test_quantize.py); an unknown mode is refused.
    with pytest.raises(DeviceError, match="unknown quantization '2bit'"):
        load_model(d, None, device="cpu", quantize="2bit", progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="cuda"):
            load_model(d, None, device="cuda", progress=False)
