#!/usr/bin/env bash
# Create .venv with asmr-daemon installed.
#   bash tools/setup.sh          # to use it (the demo, real models)
#   bash tools/setup.sh --test   # also the test tools: pytest extras, nvim, systemd-analyze, npm, vLLM
# torch is installed first and pinned to 2.13.0 only when the venv has none: on the CI/dev
# machines that version is a local CPU wheel; an unpinned torch would pull a multi-GB CUDA
# build. GPU users: install your CUDA torch into .venv before running this.
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

[[ -x .venv/bin/python ]] || python3 -m venv .venv
pip=(.venv/bin/python -m pip install --disable-pip-version-check -q)
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" "torch==2.13.0"

if (( want_test )); then
    "${pip[@]}" -e '.[test]'
    # vLLM (CPU build) in its own .venv-vllm for the remote-backend tests (~3.5 GB; skips if present).
    bash tools/setup-vllm.sh
    # System tools some tests drive for real (the unit verifier, Node for the VS Code extension).
    missing=()
    command -v systemd-analyze >/dev/null || missing+=(systemd)
    command -v npm >/dev/null || missing+=(nodejs npm)
    if (( ${#missing[@]} )); then
        if [[ $(id -u) == 0 ]]; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        else
            echo "setup: please install: ${missing[*]} (tests that need them will be skipped)" >&2
        fi
    fi
else
    "${pip[@]}" -e .
fi
