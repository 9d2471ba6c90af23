"""Where a model runs and in which precision: the device, the dtype, bitsandbytes or not."""

from __future__ import annotations

from dataclasses import dataclass

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


# From here on a model is "large": fp32 on CPU would need 4 bytes a weight (ChatGLM2-6B: 24 GiB).
# The tiny test models stay far below it, so they keep fp32, where their outputs are exact.
LARGE_MODEL_PARAMS = 1_000_000_000


@dataclass(frozen=True)
class Precision:
    """How a base model is held: the dtype of its tensors (the compute dtype when quantized) and
    the bitsandbytes mode, if any."""

    dtype: torch.dtype
    quantize: str | None = None

    def describe(self) -> str:
        name = str(self.dtype).removeprefix("torch.")
        return f"{self.quantize} ({name} compute)" if self.quantize else name


def choose_precision(device: torch.device, quantize: str | None, n_params: int) -> Precision:
    """``quantize`` is ``4bit``, ``8bit``, ``none``/None, or ``auto``.

    ``auto``: 4-bit on CPU for a large model when bitsandbytes is installed (a quarter of bf16's
    memory and about twice its speed there), else unquantized. Unquantized: bf16 (fp16 without bf16
    support) on GPUs; on CPU fp32 for small models, bf16 for large ones (a 6B model in fp32 does not
    fit a 24 GB machine; in bf16 it fits 16 GB).
    """
    from asmr_daemon.engine.quantize import QUANT_MODES, bitsandbytes_installed, require_bitsandbytes

    large = n_params >= LARGE_MODEL_PARAMS
    if quantize == "auto":
        quantize = "4bit" if device.type == "cpu" and large and bitsandbytes_installed() else None
    elif quantize == "none":
        quantize = None
    elif quantize is not None and quantize not in QUANT_MODES:
        raise DeviceError(f"unknown quantization {quantize!r}", "use 4bit, 8bit, none or auto")
    if quantize is not None:
        require_bitsandbytes()
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = torch.bfloat16 if (large or quantize is not None) else torch.float32
    return Precision(dtype, quantize)
