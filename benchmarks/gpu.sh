#!/usr/bin/env bash
# The CUDA check, under 8 minutes on a recent card: the memory table at ChatGLM2-6B's real shape
# (bf16, 8-bit, 4-bit, each + a rank-16 LoRA; tokens/s at batch 1 against the bandwidth bound,
# batch 32), then the engine against a naive per-line `generate` loop on the same checkpoint.
#
#   bash benchmarks/gpu.sh            # writes benchmarks/gpu-results/ (JSON + logs)
#
# Needs a CUDA build of torch and bitsandbytes in .venv (bash tools/setup.sh, then
# .venv/bin/pip install 'bitsandbytes>=0.50'), ~13 GB of disk for the random checkpoint (cached
# in ~/.cache/asmr-daemon-bench) and a card with >= 16 GB for the bf16 rows.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=.venv/bin/python
out=benchmarks/gpu-results
mkdir -p "$out"
start=$SECONDS
"$py" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.cuda.get_device_name(0))' \
    | tee "$out/device.txt"
# 1. Memory and decoding speed per mode (each row in its own process).
timeout 330 "$py" benchmarks/memory.py --device cuda --new-tokens 32 --timing-prompt 64 \
    --json "$out/memory.json" 2>"$out/memory.log" | tee "$out/memory.txt"
# 2. Engine (micro-batches of 32) vs a naive generate loop, bf16 + LoRA, the same random checkpoint.
ckpt="$HOME/.cache/asmr-daemon-bench/chatglm2-6b-random-28l"
timeout 150 "$py" benchmarks/engine.py --base-model "$ckpt/base" --adapter "$ckpt/lora-r16" --device cuda \
    --lines 96 --job-lines 192 --probes 5 --batch-size 32 2>"$out/engine.log" | tee "$out/engine.txt"
echo "gpu.sh finished in $((SECONDS - start)) s"
