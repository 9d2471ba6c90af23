"""LoRA layers run lean during decoding (engine/lean_lora.py): bitwise what peft gives, for the
active adapter, another adapter and adapters disabled; peft's own forward everywhere else."""

from __future__ import annotations

import torch
from peft.tuners.lora.layer import Linear as LoraLinear

from asmr_daemon.engine.adapters import attach_adapter
from asmr_daemon.engine.lean_lora import lean_lora
from asmr_daemon.engine.loading import load_model

from .kit import logits, random_model, random_native_lora, write_adapter, write_chatglm2_checkpoint


def _loaded(tmp_path, sp_model, glm_config):
    base = random_model(glm_config, seed=5)
    loaded = load_model(write_chatglm2_checkpoint(base, tmp_path / "m", sp_model),
                        write_adapter(*random_native_lora(base, seed=1), tmp_path / "first"), device="cpu",
                        progress=False)
    attach_adapter(loaded, write_adapter(*random_native_lora(base, seed=2), tmp_path / "second"), "second")
    return loaded


def _ids(glm_config) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randint(3, glm_config.vocab_size, (3, 9))


def _lean_logits(model, ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    with lean_lora(model) as count:
        return logits(model, ids), count


def test_lean_layers_give_bitwise_what_peft_gives_for_each_adapter_and_with_none(tmp_path, sp_model, glm_config):
    loaded = _loaded(tmp_path, sp_model, glm_config)
    model, ids = loaded.model, _ids(glm_config)
    layers = sum(1 for m in model.modules() if type(m) is LoraLinear)
    assert layers == 6 * glm_config.num_hidden_layers
    seen = []
    for adapter in ("second", "default"):
        model.set_adapter(adapter)
        lean, count = _lean_logits(model, ids)
        assert count == layers
        assert torch.equal(lean, logits(model, ids))  # peft's own forward again after the block
        seen.append(lean)
    with model.disable_adapter():
        lean, count = _lean_logits(model, ids)
        assert count == layers and torch.equal(lean, logits(model, ids))
        seen.append(lean)
    assert not torch.allclose(seen[0], seen[1]) and not torch.allclose(seen[1], seen[2])
    assert not any("forward" in vars(m) for m in model.modules())


def test_training_and_layers_it_does_not_know_keep_peft_s_forward(tmp_path, sp_model, glm_config):
    loaded = _loaded(tmp_path, sp_model, glm_config)
    model = loaded.model
    model.train()
    with lean_lora(model) as count:
        assert count == 0  # dropout and gradients are peft's business
    model.eval()
    model.base_model.set_adapter(["default", "second"])  # two active at once: peft sums them
    ids = _ids(glm_config)
    lean, count = _lean_logits(model, ids)
    assert count == 0 and torch.equal(lean, logits(model, ids))
