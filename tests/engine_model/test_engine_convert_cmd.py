"""`asmr-daemon convert`: a ChatGLM2 dir (+ adapter) -> native dir that loads to the same logits."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from asmr_daemon import tiny_chatglm2
from asmr_daemon.commands import convert
from asmr_daemon.engine.loading import load_model
from asmr_daemon.errors import ModelDirError

from .kit import (
    logits,
    random_model,
    random_native_lora,
    write_adapter,
    write_chatglm2_checkpoint,
)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    convert.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_convert_then_load_gives_same_logits(tmp_path, sp_model, glm_config):
    base = random_model(glm_config)
    src = write_chatglm2_checkpoint(base, tmp_path / "src", sp_model, fmt="safetensors", shards=2)
    (src / "modeling_chatglm.py").write_text("raise RuntimeError('never imported')\n")
    sd, cfg = random_native_lora(base)
    glm_sd, glm_cfg = tiny_chatglm2.chatglm2_adapter_from_native(sd, cfg, glm_config)
    src_adapter = write_adapter(glm_sd, glm_cfg, tmp_path / "src-lora", fmt="bin")
    dst, dst_adapter = tmp_path / "dst", tmp_path / "dst-lora"

    args = _args(str(src), str(dst), "--adapter", str(src_adapter), "--adapter-out", str(dst_adapter))
    assert convert.run(args) == 0

    assert json.loads((dst / "config.json").read_text())["model_type"] == "glm"
    assert (dst / "model.safetensors").is_file() and (dst / "tokenizer.model").is_file()
    scheme = json.loads((dst / "asmr_tokenizer.json").read_text())
    assert scheme["special_tokens"]["[gMASK]"] == scheme["special_tokens"]["[MASK]"] + 1
    acfg = json.loads((dst_adapter / "adapter_config.json").read_text())
    assert sorted(acfg["target_modules"]) == sorted(cfg["target_modules"])
    assert (dst_adapter / "adapter_model.safetensors").is_file()

    ids = torch.randint(3, glm_config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(1))
    from_src = load_model(src, src_adapter, device="cpu", progress=False)
    from_dst = load_model(dst, dst_adapter, device="cpu", progress=False)
    assert torch.equal(logits(from_src.model, ids), logits(from_dst.model, ids))
    with from_src.model.disable_adapter(), from_dst.model.disable_adapter():
        assert torch.equal(logits(from_src.model, ids), logits(from_dst.model, ids))


def test_convert_refuses_native_and_nonempty(tmp_path, sp_model, glm_config):
    src = write_chatglm2_checkpoint(random_model(glm_config), tmp_path / "src", sp_model)
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "keep.txt").write_text("x")
    with pytest.raises(ModelDirError, match="not empty"):
        convert.run(_args(str(src), str(dst)))
    convert.run(_args(str(src), str(tmp_path / "native")))
    with pytest.raises(ModelDirError, match="already a native GLM checkpoint"):
        convert.run(_args(str(tmp_path / "native"), str(tmp_path / "again")))
