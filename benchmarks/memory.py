"""What fits where: ChatGLM2-6B's exact shape, random weights, loaded like a user's checkpoint.

The first run writes an original-layout ChatGLM2 checkpoint of random fp16 weights (12.5 GB of
disk at 28 layers; cached under ``--cache``) and a random rank-16 LoRA on every projection. Then
each row loads it in a fresh process, straight from the original format (no ``convert``), and
reports: resident model bytes, the peak while loading (RSS on CPU, ``max_memory_allocated`` on
CUDA), the KV cache of a 32-line batch of typical script lines (prompt + 3x the source, the
engine's output cap), and decoding seconds per token at batch 1 and 32. Random values change
neither memory nor speed.

    .venv/bin/python benchmarks/memory.py                              # every row, 28 layers, CPU
    .venv/bin/python benchmarks/memory.py --rows 4bit,4bit+lora        # some rows
    .venv/bin/python benchmarks/memory.py --layers 4                   # a quick look (4 of 28 layers)
    .venv/bin/python benchmarks/memory.py --device cuda                # the same on a GPU
    .venv/bin/python benchmarks/memory.py --fidelity                   # tiny kit: 8/4-bit vs fp32

Rows run one at a time (the bf16 row needs ~14 GB of RAM on CPU); never run two at once.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROWS = ("bf16", "bf16+lora", "8bit", "8bit+lora", "4bit", "4bit+lora")
# config.json of THUDM/chatglm2-6b (the switches the converter reads).
CHATGLM2_6B = {
    "model_type": "chatglm", "hidden_size": 4096, "ffn_hidden_size": 13696, "num_layers": 28,
    "num_attention_heads": 32, "multi_query_attention": True, "multi_query_group_num": 2, "kv_channels": 128,
    "padded_vocab_size": 65024, "seq_length": 32768, "layernorm_epsilon": 1e-05, "add_qkv_bias": True,
    "add_bias_linear": False, "rmsnorm": True, "post_layer_norm": True,
    "apply_residual_connection_post_layernorm": False, "eos_token_id": 2, "pad_token_id": 0,
}
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj")
BATCH_LINES = 32
GiB = 2**30


def _kib_field(name: str) -> int:
    """A ``/proc/self/status`` field (VmRSS, VmHWM) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def glm_config(layers: int):  # type: ignore[no-untyped-def]
    from asmr_daemon.engine.chatglm2 import glm_config_from_chatglm2

    return glm_config_from_chatglm2({**CHATGLM2_6B, "num_layers": layers})


def ensure_checkpoint(cache: Path, layers: int) -> Path:
    """The random ChatGLM2-format checkpoint (+ a tokenizer and a rank-16 LoRA), written once."""
    from asmr_daemon.demo import load_pairs
    from asmr_daemon.tiny_chatglm2 import write_random_chatglm2
    from asmr_daemon.tiny_model import corpus_for, train_sentencepiece

    root = cache / f"chatglm2-6b-random-{layers}l"
    if (root / ".complete").is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    config = glm_config(layers)
    print(f"writing a random ChatGLM2-6B-shaped checkpoint ({layers} layers) to {root} ...", file=sys.stderr)
    write_random_chatglm2(root / "base", config)
    # Token ids only: the tiny kit's tokenizer is enough (the model's vocabulary stays 65024).
    train_sentencepiece(corpus_for(load_pairs()), root / "base" / "tokenizer.model")
    write_random_lora(root / "lora-r16", config)
    (root / ".complete").write_text("ok\n")
    return root


def write_random_lora(out: Path, config, rank: int = 16) -> None:  # type: ignore[no-untyped-def]
    """A peft adapter (native names) with rank ``rank`` on every projection of every layer."""
    import torch
    from safetensors.torch import save_file
    from transformers import GlmForCausalLM

    from asmr_daemon.adapter_files import write_json

    with torch.device("meta"):
        model = GlmForCausalLM(config)
    generator = torch.Generator().manual_seed(1)
    sd = {}
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in LORA_TARGETS:
            key = f"base_model.model.{name}"
            sd[f"{key}.lora_A.weight"] = torch.randn(rank, module.in_features, generator=generator) * 0.01
            sd[f"{key}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=generator) * 0.01
    out.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    write_json(out / "adapter_config.json", {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank,
                                             "target_modules": list(LORA_TARGETS), "lora_dropout": 0.0,
                                             "bias": "none", "task_type": "CAUSAL_LM"})


def typical_line_tokens(base: Path) -> tuple[int, int]:
    """(prompt tokens, source tokens) of a typical script line: the demo pairs' means."""
    from asmr_daemon.demo import load_pairs
    from asmr_daemon.engine.tokenizer import load_tokenizer
    from asmr_daemon.training_data import pair_prompt

    tok = load_tokenizer(base)
    pairs = load_pairs()
    prompt = sum(len(tok.encode_prompt(pair_prompt(p))) for p in pairs) / len(pairs)
    source = sum(len(tok.encode_answer(p.source)) for p in pairs) / len(pairs)
    return round(prompt), round(source)


def seconds_per_token(backend, prompt_tokens: int, batch: int, new_tokens: int) -> float:  # type: ignore[no-untyped-def]
    """Decoding time per generated token for ``batch`` rows: (t(new) - t(1)) / (new - 1)."""
    prompts = [[5 + (row * 7 + i) % 400 for i in range(prompt_tokens)] for row in range(batch)]
    times = []
    for n in (1, new_tokens):
        start = time.perf_counter()
        backend.generate(prompts, max_new_tokens=[n] * batch)
        times.append(time.perf_counter() - start)
    return (times[1] - times[0]) / (new_tokens - 1)


def cuda_bandwidth() -> float:
    """Bytes/s of a device-to-device copy of 1 GiB (read + write), the bound decoding works against."""
    import torch

    src = torch.empty(GiB, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        dst.copy_(src)
    torch.cuda.synchronize()
    return 2 * 10 * GiB / (time.perf_counter() - start)


def run_row(root: Path, row: str, device: str, new_tokens: int, timing_prompt: int) -> dict:
    """One row, in this (fresh) process."""
    import torch

    from asmr_daemon.engine.backend import LocalBackend
    from asmr_daemon.engine.loading import load_model

    mode, _, lora = row.partition("+")
    base = root / "base"
    cuda = device == "cuda"
    rss_before = _kib_field("VmRSS")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    loaded = load_model(base, root / "lora-r16" if lora else None, device=device,
                        quantize="none" if mode == "bf16" else mode, progress=False)
    load_s = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if cuda else _kib_field("VmHWM") - rss_before
    steady = torch.cuda.memory_allocated() if cuda else _kib_field("VmRSS") - rss_before
    config = loaded.model.config
    prompt, source = typical_line_tokens(base)
    kv_per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * 2  # k+v, bf16
    backend = LocalBackend(loaded)
    with torch.inference_mode():
        backend.generate([[5, 6, 7]], max_new_tokens=[2])  # one-time work (bitsandbytes repacks for CPU)
        s1 = seconds_per_token(backend, timing_prompt, 1, new_tokens)
        s32 = seconds_per_token(backend, timing_prompt, BATCH_LINES, new_tokens)
    extra = {}
    if cuda:  # batch-1 decoding reads every weight once per token: weight bytes / bandwidth
        bandwidth = cuda_bandwidth()
        bound = bandwidth / loaded.memory_bytes
        extra = {"bandwidth_GBps": bandwidth / 1e9, "bound_tok_s": bound, "tok_s_b1": 1 / s1,
                 "ratio_to_bound": (1 / s1) / bound, "card": torch.cuda.get_device_name(0)}
    return {**extra, "row": row, "device": device, "layers": config.num_hidden_layers, "dtype": str(loaded.dtype),
            "resident_bytes": loaded.memory_bytes, "steady_bytes": steady, "load_peak_bytes": peak,
            "load_seconds": round(load_s, 1), "kv_batch_bytes": kv_per_token * BATCH_LINES * (prompt + 3 * source),
            "line_tokens": [prompt, source], "s_per_token_b1": s1, "s_per_token_b32": s32}


def print_table(results: list[dict]) -> None:
    for r in results:
        if "bound_tok_s" in r:
            print(f"{r['row']}: {r['tok_s_b1']:.1f} tok/s at batch 1, bound {r['bound_tok_s']:.1f} tok/s "
                  f"({r['bandwidth_GBps']:.0f} GB/s / {r['resident_bytes'] / 1e9:.1f} GB): x{r['ratio_to_bound']:.2f}")
    print(f"{'row':<10} {'resident':>9} {'load peak':>9} {'peak/res':>8} {'KV x32':>7} {'s/tok b1':>8} "
          f"{'s/tok b32':>9} {'load s':>6}")
    for r in results:
        print(f"{r['row']:<10} {r['resident_bytes'] / GiB:8.2f}G {r['load_peak_bytes'] / GiB:8.2f}G "
              f"{r['load_peak_bytes'] / r['resident_bytes']:8.2f} {r['kv_batch_bytes'] / GiB:6.2f}G "
              f"{r['s_per_token_b1']:8.3f} {r['s_per_token_b32']:9.3f} {r['load_seconds']:6.0f}")


def fidelity(cache: Path) -> None:
    from asmr_daemon.demo import load_pairs
    from asmr_daemon.fidelity import measure_fidelity
    from asmr_daemon.tiny_model import build_tiny_base, corpus_for, train_demo_adapter

    kit = cache / "tiny-kit"
    pairs = load_pairs()
    if not (kit / ".complete").is_file():
        shutil.rmtree(kit, ignore_errors=True)
        build_tiny_base(kit / "base", corpus_for(pairs), seed=0, fmt="chatglm")
        train_demo_adapter(kit / "base", pairs, kit / "adapter", fmt="chatglm")
        (kit / ".complete").write_text("ok\n")
    for f in measure_fidelity(kit / "base", kit / "adapter", pairs, ("8bit", "4bit")):
        print(f"{f.mode}: {f.identical_lines}/{f.lines} greedy lines identical to fp32, largest logit difference "
              f"{f.max_logit_diff:.3f} (fp32 logits up to {f.max_abs_logit:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, from {', '.join(ROWS)}")
    parser.add_argument("--layers", type=int, default=28, help="layers of the 28 to build (default: all)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "asmr-daemon-bench")
    parser.add_argument("--new-tokens", type=int, default=4, help="tokens generated per timing run")
    parser.add_argument("--timing-prompt", type=int, default=16, help="prompt tokens per row in the timing runs")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--fidelity", action="store_true", help="only the tiny-kit 8/4-bit vs fp32 comparison")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fidelity:
        return fidelity(args.cache)
    root = ensure_checkpoint(args.cache, args.layers)
    if args.child:
        print(json.dumps(run_row(root, args.child, args.device, args.new_tokens, args.timing_prompt)))
        return None
    disk = sum(f.stat().st_size for f in (root / "base").iterdir())
    print(f"checkpoint: {root} ({disk / GiB:.1f} GiB on disk), device {args.device}", file=sys.stderr)
    results = []
    for row in args.rows.split(","):
        if row not in ROWS:
            raise SystemExit(f"unknown row {row!r}: choose from {', '.join(ROWS)}")
        cmd = [sys.executable, __file__, *sys.argv[1:], "--child", row]
        done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if done.returncode != 0:
            raise SystemExit(f"row {row} failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return None


if __name__ == "__main__":
    main()
