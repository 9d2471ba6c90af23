"""bitsandbytes quantization one tensor at a time, while the weights are read (CPU and CUDA alike).

The model is built on the meta device, transformers' own bitsandbytes quantizer swaps its Linear
layers for ``Linear4bit``/``Linear8bitLt`` (what ``from_pretrained(quantization_config=...)`` does),
and each weight is quantized the moment it arrives. Only one full-precision tensor exists at a time,
so the load peak stays near the quantized size (a whole bf16 model is never held), and the result
is the model ``from_pretrained`` would give: peft's QLoRA path and ``save_pretrained`` recognise it.
"""

from __future__ import annotations

from typing import Any

import torch

from asmr_daemon.errors import DeviceError

QUANT_MODES = ("4bit", "8bit")


def require_bitsandbytes() -> None:
    """Import bitsandbytes (and accelerate, which transformers' quantizer needs), or raise the
    one-line DeviceError that says how to get them."""
    for package in ("bitsandbytes", "accelerate"):
        try:
            __import__(package)
        except ImportError as exc:
            raise DeviceError(
                f"--quantize needs the {package} package, which is not installed",
                "pip install 'asmr-daemon[quant]' (bitsandbytes and accelerate)",
            ) from exc


def bitsandbytes_installed() -> bool:
    try:
        require_bitsandbytes()
    except DeviceError:
        return False
    return True


def bnb_config(quantize: str, compute_dtype: torch.dtype) -> Any:
    """The ``BitsAndBytesConfig`` of a mode: int8 rows, or nf4 with double quantization (QLoRA's)."""
    from transformers import BitsAndBytesConfig

    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


class TensorPlacer:
    """Puts each tensor into a meta-device model: cast, moved to ``device`` and, for a quantized
    Linear, quantized on the spot. ``finish`` marks the model quantized like ``from_pretrained``."""

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: torch.dtype | None,
                 quantize: str | None = None) -> None:
        self.model, self.device, self.dtype = model, device, dtype
        self._hf: Any = None
        if quantize is not None:
            from transformers.quantizers import AutoHfQuantizer

            require_bitsandbytes()
            device_map = {"": "cpu" if device.type == "cpu" else device.index or 0}
            self._hf = AutoHfQuantizer.from_config(bnb_config(quantize, dtype or torch.bfloat16), pre_quantized=False)
            self._hf.validate_environment(device_map=device_map)
            self._hf.preprocess_model(model=model, dtype=dtype, device_map=device_map, checkpoint_files=None,
                                      use_kernels=False)
            self._quantize_op = self._hf.get_quantize_ops()

    def place(self, name: str, value: torch.Tensor) -> None:
        value = value.to(device=self.device, dtype=self.dtype or value.dtype)
        module_path, _, param_name = name.rpartition(".")
        module = self.model.get_submodule(module_path)
        if self._hf is not None and self._hf.param_needs_quantization(self.model, name):
            param = self._quantize_op.convert({name: value}, model=self.model, full_layer_name=name)[name]
        else:
            param = torch.nn.Parameter(value, requires_grad=False)
        setattr(module, param_name, param)

    def finish(self) -> None:
        if self._hf is not None:
            self.model.hf_quantizer = self._hf  # type: ignore[assignment]
            self._hf.postprocess_model(self.model)


def quantized_bytes(model: torch.nn.Module) -> int:
    """Bytes of the quantization statistics bitsandbytes keeps beside the packed weights."""
    total = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        state = getattr(weight, "quant_state", None)
        for tensor in (getattr(state, "absmax", None), getattr(getattr(state, "state2", None), "absmax", None),
                       getattr(weight, "SCB", None)):
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
    return total
