"""Fine-tune a LoRA adapter on translation pairs (JSON Lines: ``{"source", "target"}``).

The prompts are built exactly as the daemon builds them (same template, context, glossary), loss
is on the translation and eos only. The output directory is a peft adapter the daemon loads as
is (``--adapter DIR`` or ``asmr-daemon use-adapter DIR``), with ``asmr_adapter.json`` recording
the base model, template, data hash, hyper-parameters and losses.

On a GPU the base runs in bf16/fp16 with gradient checkpointing; ``--quantize 4bit`` loads it in
4 bits (QLoRA; needs bitsandbytes, from either checkpoint format, on CUDA or CPU), so a 6B base
trains on a 16 GB card. The adapter is saved as usual and loads on an unquantized base too. On CPU
training is meant for tiny models (tests, the demo).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from asmr_daemon.engine.chatglm2_names import native_target_modules

# TrainConfig's defaults, spelled out so building the parser does not import torch (a test keeps
# them equal).
DEFAULTS = argparse.Namespace(rank=16, alpha=32, dropout=0.0, epochs=3, lr=2e-4, batch_size=4, grad_accum=1,
                              val_fraction=0.0, max_length=512, seed=0,
                              target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    parser.add_argument("data", metavar="DATA.jsonl", type=Path, help="training pairs (asmr-daemon export-dataset / import-pairs)")
    parser.add_argument("--base-model", metavar="DIR", help="ChatGLM2 or native GLM checkpoint (default: [model] base_model)")
    parser.add_argument("--out", metavar="DIR", type=Path, required=True, help="where to write the adapter")
    parser.add_argument("--force", action="store_true", help="replace an adapter already in --out")
    hp = parser.add_argument_group("hyper-parameters")
    hp.add_argument("--rank", type=int, default=d.rank, help=f"LoRA rank (default: {d.rank})")
    hp.add_argument("--alpha", type=int, default=d.alpha, help=f"LoRA alpha (default: {d.alpha})")
    hp.add_argument("--dropout", type=float, default=d.dropout, help=f"LoRA dropout (default: {d.dropout})")
    hp.add_argument("--target-modules", metavar="NAMES", default=",".join(d.target_modules),
                    help="comma-separated modules to adapt; ChatGLM2 names (query_key_value, dense, dense_h_to_4h, "
                         f"dense_4h_to_h) are accepted (default: {','.join(d.target_modules)})")
    hp.add_argument("--epochs", type=int, default=d.epochs, help=f"passes over the data (default: {d.epochs})")
    hp.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate, decays linearly (default: {d.lr})")
    hp.add_argument("--batch-size", type=int, default=d.batch_size, help=f"pairs per step (default: {d.batch_size})")
    hp.add_argument("--grad-accum", type=int, default=d.grad_accum, help="batches per optimizer step (default: 1)")
    hp.add_argument("--val-fraction", type=float, default=d.val_fraction,
                    help="share of the pairs held out for a validation loss (default: 0)")
    hp.add_argument("--max-length", type=int, default=d.max_length,
                    help=f"longest prompt + answer in tokens; longer pairs are skipped (default: {d.max_length})")
    hp.add_argument("--seed", type=int, default=d.seed, help="random seed (default: 0)")
    parser.add_argument("--resume-from", metavar="DIR", type=Path,
                        help="continue training this adapter (its rank, alpha and modules are kept)")
    parser.add_argument("--allow-other-base", action="store_true",
                        help="resume an adapter even though it records another base model")
    parser.add_argument("--template", help="prompt template with {source} (default: [prompt] template from the config)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to train (default: auto)")
    parser.add_argument("--quantize", choices=["none", "4bit"], default="none",
                        help="load the base in 4 bits (QLoRA; needs bitsandbytes)")


def target_modules(text: str) -> tuple[str, ...]:
    """``"query_key_value,dense"`` -> native names, in order, without duplicates."""
    return native_target_modules([n.strip() for n in text.replace(" ", ",").split(",") if n.strip()])


def train_config(args: argparse.Namespace, template: str) -> Any:
    from asmr_daemon.errors import ConfigError
    from asmr_daemon.training import TrainConfig

    try:
        return TrainConfig(rank=args.rank, alpha=args.alpha, dropout=args.dropout,
                           target_modules=target_modules(args.target_modules), epochs=args.epochs, lr=args.lr,
                           batch_size=args.batch_size, grad_accum=args.grad_accum, val_fraction=args.val_fraction,
                           max_length=args.max_length, seed=args.seed, template=template)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from asmr_daemon.cli import command_name
    from asmr_daemon.config import load_settings
    from asmr_daemon.dataset import read_dataset
    from asmr_daemon.errors import DatasetError
    from asmr_daemon.runtime import require_base_model

    settings = load_settings(Path(args.config) if args.config else None,
                             {("model", "base_model"): args.base_model, ("prompt", "template"): args.template})
    base_dir = require_base_model(settings)
    config = train_config(args, settings.prompt.template)
    out = preflight(args, settings)
    pairs = read_dataset(args.data)
    console = Console(stderr=True)

    from asmr_daemon.adapter_files import save_adapter
    from asmr_daemon.engine.loading import load_model
    from asmr_daemon.training import train_lora

    quantize = None if args.quantize == "none" else args.quantize
    loaded = load_model(base_dir, None, device=args.device, quantize=quantize)
    model = loaded.model
    if quantize:
        from peft import prepare_model_for_kbit_training

        # Norms in fp32 and inputs that carry grad; train_lora turns gradient checkpointing on.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    console.print(f"training on {len(pairs)} pair(s) from {args.data}, {config.epochs} epoch(s), "
                  f"{'resuming ' + str(args.resume_from) if args.resume_from else f'rank {config.rank}'}")

    rows: list[tuple[int, float, float | None]] = []

    def on_epoch(report: Any) -> None:
        rows.append((report.epoch, report.train_loss, report.val_loss))
        val = f", validation loss {report.val_loss:.4f}" if report.val_loss is not None else ""
        console.print(f"epoch {report.epoch}/{report.epochs}: train loss {report.train_loss:.4f}{val}")

    try:
        result = train_lora(model, loaded.tokenizer, pairs, config, resume_from=args.resume_from,
                            progress=True, on_epoch=on_epoch)
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    console.print(_loss_table(rows))
    meta = _metadata(args, config, pairs, result, base_dir, loaded.identity, model.config, quantize)
    save_adapter(result.model, out, metadata=meta, base_model_name_or_path=str(base_dir))
    if result.skipped:
        console.print(f"[yellow]{result.skipped} pair(s) longer than --max-length {config.max_length} were skipped[/]")
    console.print(f"adapter written to {out} (load it with --adapter {out} or `{command_name()} use-adapter {out}`)")
    return 0


def _loss_table(rows: list[tuple[int, float, float | None]]) -> Any:
    """The train/validation loss per epoch, as a rich table."""
    from rich.table import Table

    table = Table(title="losses", title_justify="left")
    for column in ("epoch", "train", "validation"):
        table.add_column(column, justify="right")
    for epoch, train, val in rows:
        table.add_row(str(epoch), f"{train:.4f}", "-" if val is None else f"{val:.4f}")
    return table


def _metadata(args: argparse.Namespace, config: Any, pairs: Any, result: Any, base_dir: Path, identity: str,
              base: Any, quantize: str | None) -> dict[str, Any]:
    """``asmr_adapter.json``: how the adapter was made, and the base it belongs to (its
    fingerprint is what a later load checks)."""
    from asmr_daemon.adapter_files import adapter_metadata
    from asmr_daemon.engine.compat import base_fingerprint

    base_identity = {"dir": str(base_dir), "identity": identity, "model_type": "glm",
                     "fingerprint": base_fingerprint(base_dir),
                     "hidden_size": base.hidden_size, "num_hidden_layers": base.num_hidden_layers,
                     "vocab_size": base.vocab_size}
    meta = adapter_metadata(config, pairs, base_identity=base_identity, result=result)
    meta["quantize"] = quantize
    meta["resumed_from"] = str(args.resume_from) if args.resume_from else None
    meta["split"] = {"train": result.train_size, "validation": result.val_size, "skipped": result.skipped}
    return meta


def preflight(args: argparse.Namespace, settings: Any) -> Path:
    """Everything that would make hours of training end in an error: the data, the output folder,
    the device, quantization, the base model and the adapter to resume. Returns --out, absolute."""
    from dataclasses import replace

    from asmr_daemon import preflight as checks
    from asmr_daemon.errors import ConfigError

    checks.check_input_file(args.data, "data set")
    out = checks.check_writable_dir(args.out, "--out")
    if (out / "adapter_config.json").exists() and not args.force:
        raise ConfigError(f"{out} already holds an adapter", "pass --force to replace it, or choose another --out")
    model = replace(settings.model, device=args.device, quantize=args.quantize,
                    adapter=args.resume_from, allow_other_base=bool(args.allow_other_base))
    checks.check_model(replace(settings, model=model))
    return out
