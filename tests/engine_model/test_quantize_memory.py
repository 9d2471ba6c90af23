"""The 4-bit load from an original ChatGLM2 checkpoint stays near the quantized size: measured.

A random ChatGLM2-layout checkpoint (12 layers, 135 M weights, 3 safetensors shards) is loaded in a
fresh process with ``--quantize 4bit``; the peak RSS of the load (VmHWM minus the RSS before it,
after a warm-up load of the tiny kit) must stay below the bf16 model's size, which a load that
converts the whole checkpoint first would exceed, and within 1.5x the resident quantized model
plus a fixed overhead. Measured here: 180 MB peak, 87 MB resident, 287 MB in bf16.
``benchmarks/memory.py`` measures the same at ChatGLM2-6B's shape.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kit import Kit

pytestmark = pytest.mark.slow

FIXED_OVERHEAD = 100 * 2**20
CHILD = r"""
import json, sys
from pathlib import Path
import bitsandbytes, peft, transformers.quantizers  # imported before the baseline: not the load's memory
from asmr_daemon.engine.loading import load_model, model_config, parameter_count
from asmr_daemon.engine.model_dir import read_model_config

def field(name):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024

# Warm up with the tiny kit first (lazy imports, bitsandbytes' CPU library): the baseline then
# holds everything but what loading this checkpoint itself needs.
load_model(Path(sys.argv[3]), None, device="cpu", quantize=sys.argv[2], progress=False)
before = field("VmRSS")
loaded = load_model(Path(sys.argv[1]), None, device="cpu", quantize=sys.argv[2], progress=False)
print(json.dumps({"peak": field("VmHWM") - before, "resident": loaded.memory_bytes,
                  "params": parameter_count(model_config(Path(sys.argv[1]), read_model_config(Path(sys.argv[1]))))}))
"""


@pytest.fixture(scope="module")
def medium_chatglm2(tiny_kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import GlmConfig

    from asmr_daemon.tiny_chatglm2 import write_random_chatglm2

    config = GlmConfig(vocab_size=4096, pad_token_id=0, eos_token_id=2, bos_token_id=1, hidden_size=1024,
                       intermediate_size=2816, num_hidden_layers=12,
                       num_attention_heads=8, num_key_value_heads=2, head_dim=128, attention_bias=True,
                       tie_word_embeddings=False, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                                   "partial_rotary_factor": 0.5})
    root = tmp_path_factory.mktemp("medium") / "chatglm2"
    write_random_chatglm2(root, config, shard_bytes=100 * 2**20)
    shutil.copyfile(tiny_kit.base_dir / "tokenizer.model", root / "tokenizer.model")
    return root


def measure(model_dir: Path, quantize: str, warm_up: Path) -> dict:
    # Large allocations straight from mmap: freed tensors go back to the system at once, so the
    # high-water mark shows what the loader held, not what glibc kept cached.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(model_dir), quantize, str(warm_up)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_4bit_load_peak_stays_near_the_quantized_size(medium_chatglm2: Path, tiny_kit: Kit) -> None:
    shards = sorted(p.name for p in medium_chatglm2.glob("*.safetensors"))
    assert shards == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    got = measure(medium_chatglm2, "4bit", tiny_kit.base_dir)
    bf16_bytes = 2 * got["params"]
    assert got["resident"] < bf16_bytes / 2.5
    # ~90 MB of the peak does not grow with the model (measured: 180 MB here for 87 MB resident);
    # at ChatGLM2-6B's shape the benchmark measures 5.39 GiB peak for 3.74 GiB resident (1.44x).
    assert got["peak"] <= 1.5 * got["resident"] + FIXED_OVERHEAD, got
    assert got["peak"] < bf16_bytes, got
