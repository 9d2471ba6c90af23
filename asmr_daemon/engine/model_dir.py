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


# safetensors dtype names -> torch dtypes (the format's own table, for the dtypes checkpoints use).
_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _read_safetensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Tensors of a safetensors file read one by one with plain reads, not a memory map.

    ``safe_open`` maps the file and every page it touches stays resident until the file is closed,
    so reading a 10 GB shard would count 10 GB against the load's peak; a read copies only the one
    tensor. The format is a little-endian u64 header size, a JSON header, then the raw bytes.
    """
    with open(path, "rb") as f:
        header_size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_size))
        header.pop("__metadata__", None)
        start = 8 + header_size
        for key, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            begin, end = info["data_offsets"]
            f.seek(start + begin)
            buffer = bytearray(end - begin)
            if f.readinto(buffer) != end - begin:
                raise ModelDirError(f"{path} is truncated: tensor {key!r} is incomplete")
            raw = torch.frombuffer(buffer, dtype=torch.uint8) if buffer else torch.empty(0, dtype=torch.uint8)
            yield key, raw.view(_SAFETENSORS_DTYPES[info["dtype"]]).reshape(info["shape"])


def read_tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Tensors of one weight file, one at a time (safetensors read per tensor, .bin memory-mapped)."""
    try:
        if path.suffix == ".safetensors":
            yield from _read_safetensors(path)
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
