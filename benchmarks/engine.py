"""Engine benchmark: the engine against the loops a user would write, measured in the same run.

Contenders, same distinct lines, same resident model and tokenizer, same per-line limit
(``max(min_new_tokens, ratio x source tokens)``):

* naive loop (``--naive``): one transformers ``generate`` call per line;
* plain batched loop: batches of ``--batch-size`` lines in file order, one limit per batch (the
  batch's largest), transformers' ``generate`` called from the main thread -- the ten lines a user
  would write;
* sorted batched loop: the same, lines sorted by length first;
* plain loop on the engine's decoder: the plain loop calling ``LocalBackend.generate`` (the
  engine's own step loop: rows leave the batch as they end, the shared template prefix computed
  once), to show how much of the engine's lead is its decoder and how much its scheduling;
* the engine: ``submit_many`` and wait (its worker thread, length-sorted micro-batches, each row
  stopping at its own limit, retries of flagged outputs, the translation memory), with its default
  ``cpu_threads`` and again with one thread per core (the loops get torch's default: all cores).

Then the translation memory (the same lines again, warm vs cold) and editors: the latency of
editor requests one after another on an idle engine and while a batch job runs, and the batch
job's lines/s during that burst of probes against its lines/s alone.

Each contender runs in a fresh process (loading the model there is not timed): two threads of one
process that both ran the model would each keep an OpenMP team, and that slows both
(``asmr_daemon/engine/threads.py``). Every figure is the median of ``--runs`` runs, and each
run's figure the median of ``--passes`` timed passes in its process (the editor latencies of
all passes pooled before the p50/p95): on this project's 2-core VM single passes of one contender
vary by +-25% between processes, while passes within a process agree to +-5%.

    .venv/bin/python benchmarks/engine.py                  # tiny demo model, CPU
    .venv/bin/python benchmarks/engine.py --mid-size       # random GLM, hidden 1024, 8 layers
    .venv/bin/python benchmarks/engine.py --base-model DIR --adapter DIR --device cuda

With no model given it builds the tiny demo model (the one ``asmr-daemon demo`` uses) in a
temporary directory first; that takes a minute on 2 CPU cores and is not part of any figure.
``--mid-size`` builds random weights with the demo's tokenizer: its outputs are noise that the
checks flag, so its runs set ``retry_repetition_penalty = 1.0`` (no retry) and every contender
does the same work.
"""

from __future__ import annotations

import argparse
import itertools
import math
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from asmr_daemon.config import DEFAULT_TEMPLATE, DecodingSettings, EngineSettings
from asmr_daemon.demo import load_pairs

# Variants make every benchmark line distinct, so neither the memory nor in-flight
# de-duplication can help the engine: only batching can.
PREFIXES = ("", "（囁き）", "（耳元で）", "（小声で）", "（優しく）", "ねえ、", "うん、", "あのね、")
SUFFIXES = ("", "ね", "よ", "な", "……")
WARMUP = 8  # lines run once before any timing (first-call set-up is not what we measure)


@dataclass(frozen=True)
class Setup:
    base: Path
    adapter: Path | None
    device: str
    decoding: DecodingSettings
    engine: EngineSettings
    lines: int
    probes: int
    job_lines: int
    loop_threads: int  # the loops' intra-op threads; 0 = torch's default, as a user's loop gets
    naive: bool
    passes: int  # timed passes in each fresh process (their median; editor latencies pooled)


def distinct_lines(count: int, offset: int = 0) -> list[str]:
    sources = [p.source for p in load_pairs()]
    variants = (f"{pre}{src}{suf}" for pre, suf in itertools.product(PREFIXES, SUFFIXES) for src in sources)
    lines = list(itertools.islice(variants, offset, offset + count))
    if len(lines) < count:
        raise SystemExit(f"only {len(lines)} distinct lines available from offset {offset}")
    return lines


def line_sets(setup: Setup) -> dict[str, list[str]]:
    """Disjoint sets of lines, so no figure is helped by another's memory entries. The editor
    figures run the same probes and job on an idle engine and on a busy one (each with a memory
    of its own): different lines would differ in length, and that alone moves a p95."""
    sizes = {"lines": setup.lines, "probes": setup.probes, "job": setup.job_lines, "warmup": WARMUP}
    offsets = itertools.accumulate(sizes.values(), initial=0)
    return {name: distinct_lines(size, offset) for (name, size), offset in zip(sizes.items(), offsets)}


# -- the contenders (each called in a fresh process) ---------------------------------------------


def _backend(setup: Setup) -> Any:
    from asmr_daemon.engine.backend import LocalBackend
    from asmr_daemon.engine.loading import load_model

    return LocalBackend(load_model(setup.base, setup.adapter, device=setup.device, progress=False))


def _limit(backend: Any, line: str, decoding: DecodingSettings) -> int:
    return max(decoding.min_new_tokens, math.ceil(decoding.max_new_tokens_ratio * len(backend.encode(line))))


def user_generate(backend: Any, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    """What a user's loop calls: transformers' ``generate`` on the same resident model, prompts
    left-padded with an attention mask, greedy, one limit for the batch."""
    import torch

    tokenizer = backend.tokenizer
    ids, mask = tokenizer.batch(prompts)
    with torch.inference_mode():
        out = backend.loaded.model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                            max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_id,
                                            pad_token_id=tokenizer.pad_id)
    return [row[: row.index(tokenizer.eos_id)] if tokenizer.eos_id in row else row
            for row in out[:, ids.shape[1] :].tolist()]


def loop_seconds(setup: Setup, kind: str) -> float:
    """A user's loop on the main thread: ``naive`` (one line per call), ``plain`` (batches in file
    order, one limit per batch) or ``sorted`` (the same after sorting the lines by length), each
    calling transformers' ``generate``; ``decoder`` is the plain loop calling the engine's decoder
    (``LocalBackend.generate``) instead, to tell the decoder's share from the scheduler's."""
    from asmr_daemon.engine.prompts import build_prompt

    if setup.loop_threads:
        import torch

        torch.set_num_threads(setup.loop_threads)
    backend, sets = _backend(setup), line_sets(setup)
    size = 1 if kind == "naive" else setup.engine.batch_size
    generate = backend.generate if kind == "decoder" else partial(user_generate, backend)

    def run(lines: list[str]) -> None:
        prompts = [backend.encode(build_prompt(line, template=DEFAULT_TEMPLATE)) for line in lines]
        limits = [_limit(backend, line, setup.decoding) for line in lines]
        rows = sorted(zip(prompts, limits), key=lambda row: len(row[0])) if kind == "sorted" else list(zip(prompts, limits))
        for start in range(0, len(rows), size):
            batch = rows[start : start + size]
            for ids in generate([p for p, _ in batch], max_new_tokens=max(n for _, n in batch)):
                backend.decode(ids)

    run(sets["warmup"])
    seconds = []
    for _ in range(setup.passes):
        start = time.perf_counter()
        run(sets["lines"])
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def _engine(setup: Setup, backend: Any, root: Path, name: str) -> Any:
    """A started engine with a memory of its own (so no pass is helped by another's)."""
    from asmr_daemon.engine.engine import Engine
    from asmr_daemon.engine.memory import TranslationMemory

    engine = Engine(backend, TranslationMemory(root / f"{name}.sqlite"), template=DEFAULT_TEMPLATE,
                    decoding=setup.decoding, engine=setup.engine)
    engine.start()
    job_seconds(engine, line_sets(setup)["warmup"])  # on the worker thread, as in the daemon
    return engine


def job_seconds(engine: Any, lines: list[str]) -> float:
    from asmr_daemon.engine.engine import Segment

    start = time.perf_counter()
    futures = engine.submit_many([Segment(line) for line in lines])
    wait(futures)
    for future in futures:
        future.result()
    return time.perf_counter() - start


def engine_seconds(setup: Setup) -> dict[str, float]:
    """Cold (every line through the model) and warm (every line from the memory), medians of the
    passes, each on a fresh memory."""
    backend, lines, cold, warm = _backend(setup), line_sets(setup)["lines"], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for number in range(setup.passes):
            engine = _engine(setup, backend, Path(tmp), f"throughput{number}")
            cold.append(job_seconds(engine, lines))
            warm.append(job_seconds(engine, lines))
            engine.close()
    return {"cold": statistics.median(cold), "warm": statistics.median(warm)}


def latencies(engine: Any, probes: list[str]) -> list[float]:
    """One editor request at a time, as an editor hovering line after line."""
    from asmr_daemon.engine.requests import Priority

    result = []
    for probe in probes:
        start = time.perf_counter()
        engine.submit(probe, priority=Priority.INTERACTIVE).result()
        result.append(time.perf_counter() - start)
    return result


def editor_figures(setup: Setup) -> dict[str, Any]:
    """Per pass: idle latencies and the job alone; then the same while a job runs (the probe
    burst). Latencies of all passes pooled; rates and open lines the medians of the passes."""
    backend, sets = _backend(setup), line_sets(setup)
    idle: list[float] = []
    busy: list[float] = []
    idle_rates, burst_rates, open_lines = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for number in range(setup.passes):
            engine = _engine(setup, backend, Path(tmp), f"idle{number}")
            idle += latencies(engine, sets["probes"])
            idle_rates.append(setup.job_lines / job_seconds(engine, sets["job"]))
            engine.close(wait=True)
            burst = probe_burst(setup, _engine(setup, backend, Path(tmp), f"busy{number}"), sets)
            busy += burst["busy"]
            burst_rates.append(burst["rate"])
            open_lines.append(burst["open"])
    return {"idle": idle, "busy": busy, "idle_rate": statistics.median(idle_rates),
            "burst_rate": statistics.median(burst_rates), "open_after_burst": statistics.median(open_lines)}


def probe_burst(setup: Setup, engine: Any, sets: dict[str, list[str]]) -> dict[str, Any]:
    """Editor requests one after another while the batch job runs; the job's lines done meanwhile."""
    from asmr_daemon.engine.engine import Segment
    from asmr_daemon.engine.requests import Priority

    finished: list[float] = []
    job = engine.submit_many([Segment(line) for line in sets["job"]], priority=Priority.BATCH)
    for future in job:
        future.add_done_callback(lambda _: finished.append(time.perf_counter()))
    start = time.perf_counter()
    busy = latencies(engine, sets["probes"])
    end = time.perf_counter()
    done_in_burst = sum(1 for t in list(finished) if t <= end)
    engine.close(wait=True)
    return {"busy": busy, "rate": done_in_burst / (end - start), "open": setup.job_lines - done_in_burst}


def in_fresh_process(fn: Callable[..., Any], *args: Any) -> Any:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


# -- models --------------------------------------------------------------------------------------


def build_mid_model(out_dir: Path, tokenizer_dir: Path) -> Path:
    """A random GLM (hidden 1024, 8 layers, ~90M parameters) with the demo's tokenizer: big enough
    that intra-op threads matter, small enough for a 2-core machine."""
    import sentencepiece as spm
    import torch
    from transformers import GlmForCausalLM

    from asmr_daemon.engine.tokenizer import TOKENIZER_FILE
    from asmr_daemon.tiny_model import tiny_glm_config

    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(tokenizer_dir / TOKENIZER_FILE, out_dir / TOKENIZER_FILE)
    pieces = spm.SentencePieceProcessor(model_file=str(out_dir / TOKENIZER_FILE)).get_piece_size()
    config = tiny_glm_config(pieces, hidden_size=1024, intermediate_size=2816, num_attention_heads=16,
                             num_key_value_heads=2, head_dim=64)
    config.num_hidden_layers = 8
    torch.manual_seed(0)
    GlmForCausalLM(config).eval().save_pretrained(str(out_dir), safe_serialization=True)
    return out_dir


def models(args: argparse.Namespace, root: Path) -> tuple[Path, Path | None]:
    """The model to measure. ``--mid-size`` builds its random GLM with the tokenizer of
    ``--base-model`` if given (it used to measure the given model instead, silently)."""
    if args.base_model is not None and not args.mid_size:
        return args.base_model, args.adapter
    from asmr_daemon.commands.demo import build_demo_model

    if args.base_model is not None:
        base, adapter = args.base_model, args.adapter
    else:
        print("building the tiny demo model (not timed)...", file=sys.stderr)
        base, adapter = build_demo_model(root / "demo")
    if not args.mid_size:
        return base, adapter
    print("building the mid-size random model (not timed)...", file=sys.stderr)
    return build_mid_model(root / "mid", base), None


# -- report --------------------------------------------------------------------------------------


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def run_once(setup: Setup) -> dict[str, float]:
    kinds = ("naive", "plain", "sorted", "decoder") if setup.naive else ("plain", "sorted", "decoder")
    figures = {kind: setup.lines / in_fresh_process(loop_seconds, setup, kind) for kind in kinds}
    seconds = in_fresh_process(engine_seconds, setup)
    all_cores = replace(setup, engine=replace(setup.engine, cpu_threads=os.cpu_count() or 1))
    figures["engine_all_cores"] = setup.lines / in_fresh_process(engine_seconds, all_cores)["cold"]
    editors = in_fresh_process(editor_figures, setup)
    figures.update(engine=setup.lines / seconds["cold"], cold=seconds["cold"], warm=seconds["warm"],
                   idle_p50=statistics.median(editors["idle"]), busy_p50=statistics.median(editors["busy"]),
                   idle_p95=p95(editors["idle"]), busy_p95=p95(editors["busy"]),
                   idle_rate=editors["idle_rate"], burst_rate=editors["burst_rate"],
                   open_after_burst=editors["open_after_burst"])
    return figures


def report(runs: list[dict[str, float]], setup: Setup) -> None:
    m = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    each = {key: " / ".join(f"{run[key]:.4g}" for run in runs) for key in runs[0]}
    print(f"model: {setup.base} + {setup.adapter}  device: {setup.device}  batch size: {setup.engine.batch_size}")
    print(f"CPU threads: engine {setup.engine.cpu_threads or 'auto (cpu_threads = 0)'}, loops "
          f"{setup.loop_threads or 'torch default'} ({os.cpu_count()} cores)  runs: {len(runs)} (median, "
          f"then each run; a run is the median of {setup.passes} passes, editor latencies pooled)  "
          f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    rows = [("naive loop (lines/s)", m["naive"], each["naive"], m["engine"] / m["naive"])] if setup.naive else []
    rows += [
        ("plain batched loop (lines/s)", m["plain"], each["plain"], m["engine"] / m["plain"]),
        ("sorted batched loop (lines/s)", m["sorted"], each["sorted"], m["engine"] / m["sorted"]),
        ("plain loop, engine's decoder (lines/s)", m["decoder"], each["decoder"], m["engine"] / m["decoder"]),
        ("engine (lines/s)", m["engine"], each["engine"], 1.0),
        ("engine, cpu_threads = all cores (lines/s)", m["engine_all_cores"], each["engine_all_cores"],
         m["engine"] / m["engine_all_cores"]),
        ("memory warm vs cold (s)", m["warm"], each["warm"], m["cold"] / m["warm"]),
        ("interactive p50 idle (ms)", m["idle_p50"] * 1e3, each["idle_p50"], None),
        ("interactive p50 under job (ms)", m["busy_p50"] * 1e3, each["busy_p50"], m["busy_p50"] / m["idle_p50"]),
        ("interactive p95 idle (ms)", m["idle_p95"] * 1e3, each["idle_p95"], None),
        ("interactive p95 under job (ms)", m["busy_p95"] * 1e3, each["busy_p95"], m["busy_p95"] / m["idle_p95"]),
        ("batch job alone (lines/s)", m["idle_rate"], each["idle_rate"], None),
        ("batch job in probe burst (lines/s)", m["burst_rate"], each["burst_rate"], m["burst_rate"] / m["idle_rate"]),
    ]
    print(f"{'figure':<40} {'median':>9}  {'ratio':>7}  runs")
    for name, value, runs_text, ratio in rows:
        ratio_text = "" if ratio is None else f"x{ratio:.2f}"
        print(f"{name:<40} {value:9.1f}  {ratio_text:>7}  {runs_text}")
    print("ratios: engine / loop; warm speed-up; under job / idle; in burst / alone. "
          f"Job lines still open after the burst: {each['open_after_burst']} of {setup.job_lines}")
    # Each run's contenders ran one after another, so a run's own ratio drifts less with the
    # host's speed than the ratio of medians across runs.
    paired = [run["engine"] / run["plain"] for run in runs]
    print(f"engine / plain loop within each run: {' / '.join(f'x{r:.2f}' for r in paired)} "
          f"(median x{statistics.median(paired):.2f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", type=Path)
    parser.add_argument("--adapter", type=Path)
    parser.add_argument("--mid-size", action="store_true", help="a random GLM, hidden 1024, 8 layers")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--lines", type=int, help="lines for the throughput runs (320; 64 with --mid-size)")
    parser.add_argument("--job-lines", type=int, help="the batch job under the probes (500; 96 with --mid-size)")
    parser.add_argument("--probes", type=int, help="editor requests in a burst (30; 8 with --mid-size)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--passes", type=int, default=3,
                        help="timed passes in each contender's process (median; editor latencies pooled)")
    parser.add_argument("--batch-size", type=int, default=EngineSettings().batch_size)
    parser.add_argument("--cpu-threads", type=int, default=EngineSettings().cpu_threads,
                        help="the engine's [engine] cpu_threads (0: its default)")
    parser.add_argument("--loop-threads", type=int, default=0, help="the loops' threads (0: torch's default)")
    parser.add_argument("--naive", action="store_true", help="also time one generate call per line")
    args = parser.parse_args(argv)
    mid = args.mid_size
    decoding = replace(DecodingSettings(), retry_repetition_penalty=1.0) if mid else DecodingSettings()
    with tempfile.TemporaryDirectory() as tmp:
        base, adapter = models(args, Path(tmp))
        setup = Setup(base, adapter, args.device, decoding,
                      EngineSettings(batch_size=args.batch_size, cpu_threads=args.cpu_threads),
                      lines=args.lines or (64 if mid else 320), probes=args.probes or (8 if mid else 30),
                      job_lines=args.job_lines or (96 if mid else 500), loop_threads=args.loop_threads,
                      naive=args.naive, passes=max(1, args.passes))
        runs = []
        for number in range(1, args.runs + 1):
            runs.append(run_once(setup))
            print(f"run {number}: " + ", ".join(f"{k} {v:.4g}" for k, v in runs[-1].items()), file=sys.stderr)
    report(runs, setup)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
