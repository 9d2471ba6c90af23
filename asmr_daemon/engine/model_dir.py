"""A base-model directory: its config, weight files and identity, read without importing its code.

Python files in a model directory are never imported: we only read ``config.json``, weight files
and ``tokenizer.model``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import GlmConfig

from asmr_daemon.engine import chatglm2
from asmr_daemon.engine.tokenizer import load_tokenizer
from asmr_daemon.errors import ModelDirError

SUPPORTED_MODEL_TYPES = ("glm", "chatglm")


def read_model_config(base_dir: Path) -> dict:
    """``config.json`` of a model directory, with a ModelDirError for every way it can be unusable."""
    path = Path(base_dir) / "config.json"
    if not Path(base_dir).is_dir():
        raise ModelDirError(f"model directory {base_dir} does not exist")
    if not path.is_file():
        raise ModelDirError(f"{path} not found: not a transformers/ChatGLM2 model directory")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelDirError(f"{path} is not valid JSON: {exc}") from exc
    model_type = cfg.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelDirError(
            f"{path} has model_type {model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)} "
            "(ChatGLM2-6B or its native GLM conversion)"
        )
    return cfg


def weight_files(base_dir: Path) -> list[Path]:
    """The weight files of a checkpoint (shards in order). Safetensors are preferred over .bin."""
    base_dir = Path(base_dir)
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = base_dir / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (OSError, ValueError, KeyError) as exc:
                raise ModelDirError(f"{index} is not a valid shard index: {exc}") from exc
            files = [base_dir / name for name in sorted(set(weight_map.values()))]
            for f in files:
                if not f.is_file():
                    raise ModelDirError(f"{f} not found (listed in {index})")
            return files
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (base_dir / single).is_file():
            return [base_dir / single]
    for pattern in ("*.safetensors", "pytorch_model*.bin"):
        found = sorted(p for p in base_dir.glob(pattern) if p.is_file())
        if found:
            return found
    raise ModelDirError(
        f"no weights in {base_dir}: expected model.safetensors, pytorch_model.bin, "
        "or shards with model.safetensors.index.json / pytorch_model.bin.index.json"
    )


def read_tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Tensors of one weight file, one at a time (safetensors lazily, .bin memory-mapped)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as f:
                for key in f.keys():
                    yield key, f.get_tensor(key)
            return
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) format cannot be memory-mapped
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except ModelDirError:
        raise
    except Exception as exc:  # torch/safetensors raise many types for damaged files
        raise ModelDirError(f"cannot read weights {path}: {exc}") from exc
    if not isinstance(sd, dict):
        raise ModelDirError(f"{path} does not hold a state dict")
    yield from sd.items()


def base_identity(base_dir: Path) -> str:
    """sha256 of config.json plus each weight file's name, size and mtime.

    Hashing 12 GB of weights would add a minute to every start; name/size/mtime change whenever the
    files are replaced, which is what the translation memory needs to notice.
    """
    h = hashlib.sha256()
    h.update((Path(base_dir) / "config.json").read_bytes())
    for f in weight_files(base_dir):
        st = f.stat()
        h.update(f"\0{f.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()


def inspect_base_model(base_dir: Path) -> str:
    """One line describing a base-model directory, or the ModelDirError that loading it would raise."""
    base_dir = Path(base_dir)
    raw_cfg = read_model_config(base_dir)
    files = weight_files(base_dir)
    tokenizer = load_tokenizer(base_dir)
    if raw_cfg["model_type"] == "chatglm":
        config = chatglm2.glm_config_from_chatglm2(raw_cfg)
        kind = "original ChatGLM2 checkpoint (converted in memory at load)"
    else:
        config = GlmConfig.from_pretrained(base_dir)
        kind = "native GLM checkpoint"
    size = sum(f.stat().st_size for f in files)
    return (f"{kind}, {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
            f"{len(files)} weight file(s), {size / 2**30:.2f} GiB, vocabulary {tokenizer.vocab_size}")
