"""Convert an original ChatGLM2 checkpoint (and optionally a LoRA trained on it) to the native GLM
format once, so later starts skip the in-memory conversion and quantized loading becomes possible.

Writes DST/config.json (model_type glm), DST/model.safetensors, DST/tokenizer.model and
DST/asmr_tokenizer.json (the token scheme); with --adapter, DST_ADAPTER/adapter_config.json and
DST_ADAPTER/adapter_model.safetensors on native module names. Python files in SRC are never run.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

from asmr_daemon.errors import AdapterError, ModelDirError

TOKEN_SCHEME_FILE = "asmr_tokenizer.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", metavar="SRC", type=Path, help="original ChatGLM2 checkpoint directory")
    parser.add_argument("dst", metavar="DST", type=Path, help="new directory for the native checkpoint")
    parser.add_argument("--adapter", metavar="SRC_ADAPTER", type=Path, help="peft LoRA trained on SRC")
    parser.add_argument("--adapter-out", metavar="DST_ADAPTER", type=Path, help="where the converted adapter goes")


def _require_empty(path: Path, what: str, error: type[ModelDirError] | type[AdapterError]) -> None:
    from asmr_daemon.preflight import check_writable_dir

    check_writable_dir(path, what)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise error(f"{what} {path} already exists and is not empty", "choose a new directory")


def run(args: argparse.Namespace) -> int:
    # Heavy imports in the steps: the CLI imports every command module to build its parser.
    from rich.console import Console

    from asmr_daemon.engine.adapters import read_adapter
    from asmr_daemon.engine.model_dir import read_model_config
    from asmr_daemon.engine.tokenizer import load_tokenizer

    src, dst = Path(os.path.abspath(args.src)), Path(os.path.abspath(args.dst))
    adapter_src = getattr(args, "adapter", None)
    adapter_dst = getattr(args, "adapter_out", None)
    if (adapter_src is None) != (adapter_dst is None):
        raise AdapterError("--adapter and --adapter-out go together", "give both, or neither")
    console = Console(stderr=True)

    raw_cfg = read_model_config(src)
    if raw_cfg["model_type"] != "chatglm":
        raise ModelDirError(f"{src} is already a native GLM checkpoint (model_type {raw_cfg['model_type']!r})")
    tokenizer = load_tokenizer(src)
    _require_empty(dst, "output directory", ModelDirError)
    if adapter_src is not None and adapter_dst is not None:
        _require_empty(Path(adapter_dst), "adapter output directory", AdapterError)
        adapter = read_adapter(Path(adapter_src))  # fail before the slow part

    with console.status(f"Converting {src} …"):
        model = _write_native(src, dst, raw_cfg, tokenizer)
    written = sorted(p.name for p in dst.iterdir())
    console.print(f"[green]wrote[/] native checkpoint {dst}: {', '.join(written)}")

    rank = None
    if adapter_src is not None and adapter_dst is not None:
        acfg = _write_adapter(adapter, model, Path(adapter_src), Path(adapter_dst), dst)
        rank = acfg.get("r")
        console.print(
            f"[green]wrote[/] adapter {adapter_dst}: adapter_config.json, adapter_model.safetensors "
            f"(targets {', '.join(acfg.get('target_modules') or [])})"
        )
    console.print(f"[dim]serve with vLLM: {vllm_command(dst, adapter_dst, rank)}[/]")
    return 0


def _write_native(src: Path, dst: Path, raw_cfg: dict[str, Any], tokenizer: Any) -> Any:
    """Convert the checkpoint in memory and write it (safetensors) with its tokenizer files;
    returns the native model (the adapter's shapes are checked against it)."""
    import torch

    from asmr_daemon.adapter_files import write_json
    from asmr_daemon.engine import chatglm2
    from asmr_daemon.engine.loading import load_weights
    from asmr_daemon.engine.tokenizer import SPECIAL_TOKENS, TOKENIZER_FILE

    model = load_weights(src, chatglm2.glm_config_from_chatglm2(raw_cfg), chatglm=True, device=torch.device("cpu"),
                         dtype=None)
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst)  # transformers 5 always writes safetensors
    shutil.copyfile(src / TOKENIZER_FILE, dst / TOKENIZER_FILE)
    scheme = {
        "kind": "chatglm2-sentencepiece",
        "file": TOKENIZER_FILE,
        "pad_id": tokenizer.pad_id,
        "bos_id": tokenizer.bos_id,
        "eos_id": tokenizer.eos_id,
        "special_tokens": {name: tokenizer.special_ids[name] for name in SPECIAL_TOKENS},
        "prompt_prefix": ["[gMASK]", "sop"],
        "padding_side": "left",
    }
    write_json(dst / TOKEN_SCHEME_FILE, scheme)
    return model


def _write_adapter(adapter: Any, model: Any, adapter_src: Path, adapter_dst: Path, dst: Path) -> dict[str, Any]:
    """Convert a ChatGLM2-named adapter to native names and write it; returns its config."""
    from safetensors.torch import save_file

    from asmr_daemon.adapter_files import write_json
    from asmr_daemon.engine import chatglm2
    from asmr_daemon.engine.adapters import check_adapter_shapes
    from asmr_daemon.engine.compat import METADATA_FILE

    raw_sd, raw_acfg, weights, _ = adapter
    try:
        sd, acfg = chatglm2.convert_chatglm2_adapter(raw_sd, raw_acfg, model.config)
    except AdapterError as exc:
        raise AdapterError(f"{weights}: {exc.message}", exc.hint) from exc
    check_adapter_shapes(sd, model, model.config, weights)
    adapter_dst.mkdir(parents=True, exist_ok=True)
    acfg["base_model_name_or_path"] = str(dst)
    write_json(adapter_dst / "adapter_config.json", acfg)
    recorded = adapter_src / METADATA_FILE  # the base fingerprint holds across the conversion
    if recorded.is_file():
        shutil.copyfile(recorded, adapter_dst / METADATA_FILE)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(adapter_dst / "adapter_model.safetensors"))
    return acfg


def vllm_command(model: Path, adapter: Path | None, rank: int | None) -> str:
    """How to serve a converted directory with vLLM for ``backend = "openai"``: no remote code, and no
    tokenizer on the server (the daemon sends and receives token ids; see engine/remote.py)."""
    command = f"vllm serve {model} --skip-tokenizer-init"
    if adapter is not None:
        command += f" --enable-lora --lora-modules NAME={adapter}"
        if rank and rank > 16:  # vLLM's default --max-lora-rank
            command += f" --max-lora-rank {next(r for r in (32, 64, 128, 256, 320, 512) if r >= rank)}"
    return command
