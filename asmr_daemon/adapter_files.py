"""The adapter directory training writes: a standard peft adapter plus ``asmr_adapter.json``.

``adapter_config.json`` and ``adapter_model.safetensors`` are what ``PeftModel.from_pretrained``
reads; ``asmr_adapter.json`` records the base model, template, data hash, hyper-parameters and losses.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from asmr_daemon.scripts.writer import atomic_write_bytes
from asmr_daemon.training_data import TrainingPair, dataset_hash

if TYPE_CHECKING:
    from asmr_daemon.training import TrainConfig, TrainResult

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
METADATA_FILE = "asmr_adapter.json"
METADATA_FORMAT = "asmr-daemon-adapter"


def adapter_metadata(
    config: TrainConfig,
    pairs: Sequence[TrainingPair],
    *,
    base_identity: Any = None,
    result: TrainResult | None = None,
) -> dict[str, Any]:
    """The standard ``asmr_adapter.json`` content for an adapter trained with ``config`` on ``pairs``."""
    meta: dict[str, Any] = {
        "base": base_identity,
        "template": config.template,
        "data": {"sha256": dataset_hash(pairs), "pairs": len(pairs)},
        "hyperparameters": config.hyperparameters(),
    }
    if result is not None:
        meta["train_losses"] = [round(x, 6) for x in result.train_losses]
        meta["val_losses"] = [round(x, 6) for x in result.val_losses]
        meta["epochs_trained"] = len(result.train_losses)
    return meta


def created_timestamp() -> str:
    """Now in UTC, or ``$SOURCE_DATE_EPOCH`` when set (reproducible builds give the same files)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = _dt.datetime.fromtimestamp(int(epoch), _dt.UTC) if epoch else _dt.datetime.now(_dt.UTC)
    return when.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def save_adapter(
    peft_model: Any,
    out_dir: Path,
    *,
    metadata: dict[str, Any],
    base_model_name_or_path: str | None = None,
) -> Path:
    """Write ``adapter_config.json``, ``adapter_model.safetensors`` and ``asmr_adapter.json``.

    The first two are a standard peft directory (``PeftModel.from_pretrained`` reads it).
    ``metadata`` (see ``adapter_metadata``) is stored with ``format`` and ``created`` added unless
    given. ``base_model_name_or_path`` overrides the peft field (else the model's own name/path).
    """
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = next(iter(peft_model.peft_config))
    cfg = peft_model.peft_config[name].to_dict()
    cfg = {k: (sorted(v) if isinstance(v, set) else v) for k, v in cfg.items()}
    cfg["inference_mode"] = True
    if base_model_name_or_path is not None:
        cfg["base_model_name_or_path"] = base_model_name_or_path
    for key in ("task_type", "peft_type"):  # enums -> their string values
        if cfg.get(key) is not None and not isinstance(cfg[key], str):
            cfg[key] = str(getattr(cfg[key], "value", cfg[key]))
    sd = get_peft_model_state_dict(peft_model, adapter_name=name)
    sd = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in sd.items()}
    save_file(sd, str(out_dir / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    write_json(out_dir / ADAPTER_CONFIG, cfg)
    meta = {"format": METADATA_FORMAT, "created": created_timestamp(), **metadata}
    write_json(out_dir / METADATA_FILE, meta)
    return out_dir


def write_json(path: Path, data: Any) -> None:
    """JSON written atomically (adapter configs and metadata are outputs the daemon reads)."""
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"
    atomic_write_bytes(Path(path), text.encode("utf-8"))
