"""Remote-backend benchmark: lines/s of the engine on the local backend (resident transformers +
peft model) vs the openai backend (a vLLM server), on the same distinct lines, the same model and
adapter and the same generation caps, in one run; plus how many outputs are identical.

    .venv/bin/python benchmarks/remote.py                  # tiny demo model; starts vLLM from .venv-vllm
    .venv/bin/python benchmarks/remote.py --base-model DIR --adapter DIR --device cuda \\
        --server-url http://127.0.0.1:8000/v1 --served-model NAME --served-adapter LORA

With no ``--server-url`` it starts ``vllm`` from .venv-vllm (tools/setup-vllm.sh) on loopback, on the
CPU, serving ``--base-model`` (a native directory: ``asmr-daemon convert`` output) with the adapter.
With no model given it builds the tiny demo model first (not timed).

Read the CPU figures with care: a tiny model on a few shared cores says little about throughput.
Where the remote backend matters is a GPU server (or several: --tensor-parallel-size): vLLM's
continuous batching and paged KV cache keep hundreds of rows in flight, while the local backend
pads one micro-batch at a time. Run it there with ``--server-url`` and ``--remote-batch-size``
large (the engine's micro-batch is what the server sees at once; ``[engine] batch_size``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import distinct_lines, run_job  # noqa: E402  (benchmarks/engine.py: same lines, same timing)

from asmr_daemon.commands.demo import build_demo_model  # noqa: E402
from asmr_daemon.config import (  # noqa: E402
    DEFAULT_TEMPLATE,
    DecodingSettings,
    EngineSettings,
    OpenAISettings,
)
from asmr_daemon.engine.backend import LocalBackend  # noqa: E402
from asmr_daemon.engine.engine import Engine, Segment  # noqa: E402
from asmr_daemon.engine.loading import load_model  # noqa: E402
from asmr_daemon.engine.memory import TranslationMemory  # noqa: E402
from asmr_daemon.engine.remote import OpenAIBackend  # noqa: E402
from asmr_daemon.engine.requests import Backend  # noqa: E402
from asmr_daemon.engine.tokenizer import load_tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"


def start_vllm(model: Path, adapter: Path | None, port: int, home: Path) -> subprocess.Popen:
    """The recipe from the README, on the CPU (fp32 to match the local CPU model exactly)."""
    if not VLLM_PYTHON.exists():
        raise SystemExit(f"{VLLM_PYTHON} is missing: run `bash tools/setup-vllm.sh`, or pass --server-url")
    command = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
               "--served-model-name", "base", "--skip-tokenizer-init", "--dtype", "float32",
               "--max-model-len", "1024", "--host", "127.0.0.1", "--port", str(port)]
    if adapter is not None:
        rank = json.loads((adapter / "adapter_config.json").read_text())["r"]
        command += ["--enable-lora", "--lora-modules", f"lora={adapter}",
                    "--max-lora-rank", str(next(r for r in (8, 16, 32, 64, 128, 256, 320, 512) if r >= rank))]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "HOME": str(home), "VLLM_NO_USAGE_STATS": "1"}
    log = open(home / "vllm.log", "w")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"vllm exited ({proc.returncode}); see {home / 'vllm.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("vllm did not start within 300 s")


def timed(backend: Backend, lines: list[str], root: Path, name: str, batch_size: int) -> tuple[float, list[str]]:
    """Seconds for the whole job on a fresh engine (empty memory), and the outputs."""
    engine = Engine(backend, TranslationMemory(root / f"{name}.sqlite"), template=DEFAULT_TEMPLATE,
                    decoding=DecodingSettings(), engine=EngineSettings(batch_size=batch_size, token_budget=1 << 20))
    engine.start()
    try:
        run_job(engine, lines[:4])  # warm-up (first requests, lazy adapter attach), other lines
        engine.memory.close()
        engine.memory = TranslationMemory(root / f"{name}-timed.sqlite")
        seconds = run_job(engine, lines[4:])
        futures = engine.submit_many([Segment(line) for line in lines[4:]])
        return seconds, [f.result().text for f in futures]  # memory hits now: the same outputs
    finally:
        engine.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", type=Path, help="native GLM directory (asmr-daemon convert output)")
    parser.add_argument("--adapter", type=Path, help="native-named LoRA (convert --adapter-out)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--lines", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=EngineSettings().batch_size, help="local micro-batch")
    parser.add_argument("--remote-batch-size", type=int, nargs="+", default=[16, 64],
                        help="engine micro-batch(es) for the remote backend: rows in flight at the server")
    parser.add_argument("--server-url", help="an already running server (else vLLM is started on the CPU)")
    parser.add_argument("--served-model", default="base")
    parser.add_argument("--served-adapter", default="lora")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.base_model is None:
            print("building the tiny demo model (not timed)...", file=sys.stderr)
            base, adapter = build_demo_model(root / "model")
        else:
            base, adapter = args.base_model, args.adapter
        lines = distinct_lines(args.lines + 4)

        # Local first, before a CPU server competes for the same cores.
        loaded = load_model(base, adapter, device=args.device, progress=False)
        local_s, local_out = timed(LocalBackend(loaded), lines, root, "local", args.batch_size)
        del loaded

        proc = None
        url = args.server_url
        if url is None:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            print("starting vllm on the CPU (not timed)...", file=sys.stderr)
            started = time.perf_counter()
            proc = start_vllm(base, adapter, port, root)
            print(f"vllm ready after {time.perf_counter() - started:.0f} s", file=sys.stderr)
            url = f"http://127.0.0.1:{port}/v1"
        try:
            settings = OpenAISettings(base_url=url, model=args.served_model,
                                      adapter=args.served_adapter if adapter is not None else "",
                                      max_concurrent=max(args.remote_batch_size))
            remote = OpenAIBackend(settings, load_tokenizer(base))
            results = [(size, *timed(remote, lines, root, f"remote{size}", size)) for size in args.remote_batch_size]
        finally:
            if proc is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    n = len(lines) - 4
    print(f"model: {base} + {adapter}  local device: {args.device}  server: {url}  lines: {n}")
    print(f"{'local (transformers + peft)':<34} batch {args.batch_size:>4}  {n / local_s:8.1f} lines/s")
    for size, seconds, outputs in results:
        same = sum(a == b for a, b in zip(outputs, local_out))
        print(f"{'openai (vLLM)':<34} batch {size:>4}  {n / seconds:8.1f} lines/s  x{local_s / seconds:.2f}  "
              f"identical outputs {same}/{n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
