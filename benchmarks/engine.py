"""Engine benchmark: figures side by side with a baseline measured in the same run.

1. throughput: the engine (micro-batches) vs a naive loop calling ``generate`` one line at a time,
   on the same distinct lines, the same model and the same generation caps (lines/s, ratio);
2. translation memory: the same lines again, warm vs cold (ratio);
3. interactive latency: p50/p95 of editor-style requests while a 500-line batch job runs vs idle.

    .venv/bin/python benchmarks/engine.py                       # tiny demo model, CPU
    .venv/bin/python benchmarks/engine.py --base-model DIR --adapter DIR --device cuda

With no model given it builds the tiny demo model (the one ``asmr-daemon demo`` uses) in a
temporary directory first; that takes a minute on 2 CPU cores and is not part of any figure.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import tempfile
import time
from concurrent.futures import wait
from pathlib import Path

from asmr_daemon.commands.demo import build_demo_model
from asmr_daemon.config import DEFAULT_TEMPLATE, DecodingSettings, EngineSettings
from asmr_daemon.demo import load_pairs
from asmr_daemon.engine.backend import LocalBackend
from asmr_daemon.engine.engine import Engine, Segment
from asmr_daemon.engine.loading import load_model
from asmr_daemon.engine.memory import TranslationMemory
from asmr_daemon.engine.prompts import build_prompt
from asmr_daemon.engine.requests import Priority

# Variants make every benchmark line distinct, so neither the memory nor in-flight
# de-duplication can help the engine: only batching can.
PREFIXES = ("", "（囁き）", "（耳元で）", "（小声で）", "（優しく）", "ねえ、", "うん、", "あのね、")
SUFFIXES = ("", "ね", "よ", "な", "……")


def distinct_lines(count: int, offset: int = 0) -> list[str]:
    sources = [p.source for p in load_pairs()]
    variants = (f"{pre}{src}{suf}" for pre, suf in itertools.product(PREFIXES, SUFFIXES) for src in sources)
    lines = list(itertools.islice(variants, offset, offset + count))
    if len(lines) < count:
        raise SystemExit(f"only {len(lines)} distinct lines available from offset {offset}")
    return lines


def naive_loop(backend: LocalBackend, lines: list[str], decoding: DecodingSettings) -> float:
    """Seconds for one ``generate`` call per line (no batching, no memory)."""
    start = time.perf_counter()
    for line in lines:
        limit = max(decoding.min_new_tokens, math.ceil(decoding.max_new_tokens_ratio * len(backend.encode(line))))
        ids = backend.generate([backend.encode(build_prompt(line, template=DEFAULT_TEMPLATE))], max_new_tokens=[limit])
        backend.decode(ids[0])
    return time.perf_counter() - start


def run_job(engine: Engine, lines: list[str], priority: Priority = Priority.BATCH) -> float:
    start = time.perf_counter()
    futures = engine.submit_many([Segment(line) for line in lines], priority=priority)
    wait(futures)
    for future in futures:
        future.result()
    return time.perf_counter() - start


def latencies(engine: Engine, probes: list[str]) -> list[float]:
    """One interactive request at a time, as an editor hovering line after line."""
    result = []
    for probe in probes:
        start = time.perf_counter()
        engine.submit(probe, priority=Priority.INTERACTIVE).result()
        result.append(time.perf_counter() - start)
    return result


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", type=Path)
    parser.add_argument("--adapter", type=Path)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--lines", type=int, default=160, help="lines for the throughput runs")
    parser.add_argument("--job-lines", type=int, default=500, help="batch job running during the latency probes")
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=EngineSettings().batch_size)
    args = parser.parse_args(argv)

    decoding = DecodingSettings()
    settings = EngineSettings(batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.base_model is None:
            print("building the tiny demo model (not timed)...", file=sys.stderr)
            base, adapter = build_demo_model(root)
        else:
            base, adapter = args.base_model, args.adapter
        loaded = load_model(base, adapter, device=args.device, progress=False)
        backend = LocalBackend(loaded)

        def fresh_engine(name: str) -> Engine:
            engine = Engine(backend, TranslationMemory(root / f"{name}.sqlite"), template=DEFAULT_TEMPLATE,
                            decoding=decoding, engine=settings)
            engine.start()
            return engine

        lines = distinct_lines(args.lines)
        naive_s = naive_loop(backend, lines, decoding)
        engine = fresh_engine("throughput")
        cold_s = run_job(engine, lines)
        warm_s = run_job(engine, lines)
        engine.close()

        probes_idle = distinct_lines(args.probes, offset=args.lines)
        probes_busy = distinct_lines(args.probes, offset=args.lines + args.probes)
        job = distinct_lines(args.job_lines, offset=args.lines + 2 * args.probes)
        engine = fresh_engine("latency")
        idle = latencies(engine, probes_idle)
        job_futures = engine.submit_many([Segment(line) for line in job], priority=Priority.BATCH)
        busy = latencies(engine, probes_busy)
        job_open = sum(1 for f in job_futures if not f.done())
        engine.close(wait=True)

    n = len(lines)
    rows = [
        ("throughput (lines/s)", f"naive loop {n / naive_s:8.1f}", f"engine {n / cold_s:8.1f}", f"x{naive_s / cold_s:.1f}"),
        ("memory (s for all lines)", f"cold {cold_s:8.3f}", f"warm {warm_s:8.4f}", f"x{cold_s / warm_s:.0f}"),
        ("interactive p50 (ms)", f"idle {statistics.median(idle) * 1e3:8.1f}",
         f"under job {statistics.median(busy) * 1e3:8.1f}", f"x{statistics.median(busy) / statistics.median(idle):.2f}"),
        ("interactive p95 (ms)", f"idle {p95(idle) * 1e3:8.1f}", f"under job {p95(busy) * 1e3:8.1f}",
         f"x{p95(busy) / p95(idle):.2f}"),
    ]
    print(f"model: {base} + {adapter}  device: {loaded.device}  batch size: {settings.batch_size}")
    for row in rows:
        print(f"{row[0]:<26} {row[1]:<22} {row[2]:<26} {row[3]}")
    print(f"the batch job still had {job_open} of {len(job)} lines open when the last probe was answered")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
