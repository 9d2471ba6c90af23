"""bitsandbytes quantization on CPU with the tiny kit: straight from the ChatGLM2 checkpoint, with
LoRA adapters attached and swapped, against fp32; the precision defaults; the missing-package message.

Fidelity levels (measured on this machine with the kit's 27 pairs, bitsandbytes 0.50.2): 8-bit and
4-bit both give 27/27 greedy lines identical to fp32; the largest teacher-forced logit difference
is 0.36 for 8-bit and 2.70 for 4-bit (fp32 logits reach 24.1). The bounds below sit just above
those figures; loosen them only with a new measurement and a reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from kit import Kit

from asmr_daemon.engine.devices import LARGE_MODEL_PARAMS, choose_precision
from asmr_daemon.engine.loading import load_model
from asmr_daemon.errors import DeviceError
from asmr_daemon.fidelity import measure_fidelity

# Of the largest fp32 logit: the kit's weights (trained here) differ with the CPU's kernels, and
# so do their logits (24.1 on one machine, 27.4 on another); relative to them the differences
# stayed put (8-bit 0.36 and 0.41, ~0.015; 4-bit 2.70 and 3.35, 0.11-0.12).
MAX_RELATIVE_LOGIT_DIFF = {"8bit": 0.02, "4bit": 0.15}
CPU = torch.device("cpu")


def test_cpu_precision_defaults() -> None:
    small, large = 10_000_000, 6_000_000_000
    assert choose_precision(CPU, None, small).dtype == torch.float32  # the tiny models stay exact
    assert choose_precision(CPU, "auto", small).quantize is None
    assert choose_precision(CPU, "none", large).dtype == torch.bfloat16  # a 6B model fits 16 GB
    auto = choose_precision(CPU, "auto", large)
    assert (auto.quantize, auto.dtype) == ("4bit", torch.bfloat16)  # bitsandbytes is installed here
    assert choose_precision(CPU, "8bit", small).dtype == torch.bfloat16
    assert LARGE_MODEL_PARAMS > 100_000_000  # ChatGLM2-6B is far above, the kit far below
    with pytest.raises(DeviceError, match="unknown quantization '3bit'"):
        choose_precision(CPU, "3bit", small)


def test_the_tiny_kit_loads_in_fp32_by_default(tiny_kit: Kit) -> None:
    loaded = load_model(tiny_kit.base_dir, None, device="cpu", quantize="auto", progress=False)
    assert loaded.dtype == torch.float32 and loaded.quantize is None
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())


def test_missing_bitsandbytes_is_one_line(tiny_kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import bitsandbytes -> ImportError
    with pytest.raises(DeviceError) as info:
        load_model(tiny_kit.base_dir, None, device="cpu", quantize="4bit", progress=False)
    assert info.value.message == "--quantize needs the bitsandbytes package, which is not installed"
    assert "pip install" in (info.value.hint or "")
    assert choose_precision(CPU, "auto", 6_000_000_000).quantize is None  # auto falls back to bf16


@pytest.mark.parametrize("mode", ["8bit", "4bit"])
def test_quantized_from_the_chatglm2_checkpoint_matches_fp32(tiny_kit: Kit, mode: str) -> None:
    (result,) = measure_fidelity(tiny_kit.base_dir, tiny_kit.adapter_dir, tiny_kit.pairs, [mode])
    assert (result.identical_lines, result.lines) == (len(tiny_kit.pairs), len(tiny_kit.pairs))
    assert result.max_logit_diff <= MAX_RELATIVE_LOGIT_DIFF[mode] * result.max_abs_logit


def greedy(backend, sources: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    from asmr_daemon.engine.prompts import build_prompt

    prompts = [backend.encode(build_prompt(s)) for s in sources]
    return [backend.decode(ids) for ids in backend.generate(prompts, max_new_tokens=[40] * len(prompts))]


def test_a_quantized_base_takes_adapters_and_swaps_them(tiny_kit: Kit) -> None:
    import bitsandbytes as bnb

    from asmr_daemon.engine.backend import LocalBackend

    loaded = load_model(tiny_kit.base_dir, None, device="cpu", quantize="4bit", progress=False)
    fp32 = load_model(tiny_kit.base_dir, None, device="cpu", progress=False)
    assert isinstance(loaded.model.model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit) and loaded.quantize == "4bit"
    assert loaded.memory_bytes < fp32.memory_bytes / 2
    sources = [p.source for p in tiny_kit.pairs]
    targets = [p.target for p in tiny_kit.pairs]
    bare = LocalBackend(loaded)
    assert all(got != want for got, want in zip(greedy(bare, sources[:4]), targets[:4], strict=True))
    a = bare.with_adapter(tiny_kit.adapter_dir)  # ChatGLM2-named, attached to the 4-bit base
    b = a.with_adapter(tiny_kit.native_adapter_dir)  # the same LoRA in native names, side by side
    assert b.identity != a.identity
    assert greedy(a, sources) == targets
    assert greedy(b, sources) == targets
    a.retire()
    assert greedy(b, sources[:4]) == targets[:4]
    # The bare backend still runs the bare base (its untrained, near-tie logits may flip a token in
    # 4 bits once peft wraps the layers, so only "not adapted" is asserted, unlike in fp32).
    assert all(got != want for got, want in zip(greedy(bare, sources[:4]), targets[:4], strict=True))
    assert isinstance(loaded.model.get_base_model().model.layers[0].self_attn.q_proj.base_layer, bnb.nn.Linear4bit)


@pytest.mark.slow
def test_translate_quantized_straight_from_the_original_checkpoint(tiny_kit: Kit, tmp_path: Path) -> None:
    from asmr_daemon.cli import main

    out = tmp_path / "out"
    assert main(["translate", str(tiny_kit.script), "-o", str(out), "--base-model", str(tiny_kit.base_dir),
                 "--adapter", str(tiny_kit.adapter_dir), "--device", "cpu", "--quantize", "4bit"]) == 0
    assert (out / "script.zh.txt").read_bytes() == tiny_kit.expected.read_bytes()
    assert not tiny_kit.import_marker.exists()


def test_the_daemons_engine_serves_a_4bit_base_and_swaps_its_adapter(tiny_kit: Kit, tmp_path: Path) -> None:
    """What ``serve --quantize 4bit`` builds: the runtime's engine on a 4-bit base, hot-swapped."""
    from asmr_daemon.config import load_settings
    from asmr_daemon.runtime import build_engine

    settings = load_settings(None, {("model", "base_model"): tiny_kit.base_dir, ("model", "adapter"): None,
                                    ("model", "device"): "cpu", ("model", "quantize"): "4bit",
                                    ("paths", "state_dir"): tmp_path / "state"})
    runtime = build_engine(settings, progress=False)
    try:
        pair = tiny_kit.pairs[3]
        assert runtime.loaded.quantize == "4bit"
        assert runtime.engine.submit(pair.source).result(120).text != pair.target  # bare base
        runtime.engine.use_adapter(tiny_kit.adapter_dir)
        assert runtime.engine.submit(pair.source).result(120).text == pair.target
    finally:
        runtime.close()
