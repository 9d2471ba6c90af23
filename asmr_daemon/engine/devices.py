"""Where a model runs and in which precision: devices, default dtypes, bitsandbytes quantization."""

from __future__ import annotations

from typing import Any

import torch

from asmr_daemon.errors import DeviceError


def resolve_device(device: str) -> torch.device:
    """``auto`` = cuda when available, else cpu. An unavailable cuda is a DeviceError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {device!r}", "use auto, cpu or cuda") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device cuda requested but no CUDA GPU is available", "use --device cpu or auto")
    if resolved.type not in ("cpu", "cuda"):
        raise DeviceError(f"unsupported device {device!r}", "use auto, cpu or cuda")
    return resolved


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs that support it, else fp16; fp32 on CPU (half precision is slow and lossy there)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def quantization_config(quantize: str | None, device: torch.device) -> Any:
    if quantize in (None, "none"):
        return None
    if quantize not in ("4bit", "8bit"):
        raise DeviceError(f"unknown quantization {quantize!r}", "use 4bit or 8bit")
    if device.type != "cuda":
        raise DeviceError("quantization needs a CUDA GPU", "drop --quantize or use --device cuda")
    try:
        import bitsandbytes  # noqa: F401  (imported only to check it is installed)
    except ImportError as exc:
        raise DeviceError("quantization needs the bitsandbytes package", "pip install bitsandbytes") from exc
    from transformers import BitsAndBytesConfig

    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=default_dtype(device),
    )
