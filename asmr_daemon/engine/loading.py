"""Load the base model (native GLM or original ChatGLM2 checkpoint) and attach LoRA adapters.

One path for both formats, tests and real use: the checkpoint is read tensor by tensor, ChatGLM2
names are converted in memory (``chatglm2.py``), and each tensor is cast, quantized when asked
(``quantize.py``) and assigned into a ``GlmForCausalLM`` built on the meta device, so the weights are
never held twice. Python files in a model directory are never imported (``model_dir.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from transformers import GlmConfig, GlmForCausalLM

from asmr_daemon.engine import chatglm2
from asmr_daemon.engine.adapters import attach_adapter
from asmr_daemon.engine.chatglm2_names import chatglm2_name_of
from asmr_daemon.engine.devices import choose_precision, resolve_device
from asmr_daemon.engine.model_dir import base_identity, read_model_config, read_tensors, weight_files
from asmr_daemon.engine.quantize import TensorPlacer, quantized_bytes
from asmr_daemon.engine.tokenizer import ChatGLM2Tokenizer, load_tokenizer
from asmr_daemon.errors import ModelDirError
from asmr_daemon.progress import AnyProgress, make_progress


@dataclass
class LoadedModel:
    """A resident model: ``model`` is a ``GlmForCausalLM`` or, once an adapter is attached, a ``PeftModel``."""

    model: Any
    tokenizer: ChatGLM2Tokenizer
    device: torch.device
    dtype: torch.dtype
    identity: str
    adapter_identity: str | None
    memory_bytes: int
    base_dir: Path
    adapter_dir: Path | None
    adapter_name: str | None = None  # the peft name of the adapter attached at load time
    quantize: str | None = None  # "4bit"/"8bit" when the base is quantized


# How many times this process read a base model's weights (``load_model``). A daemon loads once;
# adapter switches must never reload the base, and the daemon's status shows this counter.
BASE_LOADS = 0


def base_load_count() -> int:
    return BASE_LOADS


# ---------------------------------------------------------------------------------------------
# Building the base model
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _progress(enabled: bool, console: Console) -> Iterator[AnyProgress | None]:
    if not enabled:
        yield None
        return
    progress = make_progress(  # plain lines when stderr is not a terminal
        console,
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        transient=True,
        unit=" files",
    )
    with progress:
        yield progress


def model_config(base_dir: Path, raw_cfg: dict) -> GlmConfig:
    """The native config of a model directory (ChatGLM2's is translated)."""
    if raw_cfg["model_type"] == "chatglm":
        return chatglm2.glm_config_from_chatglm2(raw_cfg)
    try:
        return GlmConfig.from_pretrained(base_dir)
    except (OSError, ValueError) as exc:
        raise ModelDirError(f"cannot read the GLM config in {base_dir}: {exc}") from exc


def parameter_count(config: GlmConfig) -> int:
    """Weights of the model ``config`` describes, counted on the meta device (no memory)."""
    with torch.device("meta"):
        return sum(p.numel() for p in GlmForCausalLM(config).parameters())


def _native_tensors(path: Path, key: str, tensor: torch.Tensor, config: GlmConfig,
                    chatglm: bool) -> dict[str, torch.Tensor]:
    if not chatglm:
        return {key: tensor}
    try:
        return chatglm2.convert_chatglm2_state_dict({key: tensor}, config)
    except ModelDirError as exc:
        raise ModelDirError(f"{path}: {exc.message}", "is this a ChatGLM2-6B checkpoint?") from exc


def load_weights(
    base_dir: Path,
    config: GlmConfig,
    *,
    chatglm: bool,
    device: torch.device,
    dtype: torch.dtype | None,
    quantize: str | None = None,
    progress: AnyProgress | None = None,
) -> GlmForCausalLM:
    """Read a checkpoint (ChatGLM2 or native) tensor by tensor into a ``GlmForCausalLM``, strictly.

    The model is built on the meta device and each tensor is converted, cast, (quantized) and put in
    place as it is read, so the weights are never held twice. ``dtype=None`` keeps the stored dtype
    (what ``convert`` wants). Missing, unknown or misshapen tensors raise ModelDirError naming the
    file and the tensor.
    """
    files = weight_files(base_dir)
    with torch.device("meta"):
        model = GlmForCausalLM(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    placer = TensorPlacer(model, device, dtype, quantize)
    placed: set[str] = set()
    stored_dtype = dtype
    task = progress.add_task("Loading weights", total=len(files)) if progress else None
    for path in files:
        for key, tensor in read_tensors(path):
            for name, value in _native_tensors(path, key, tensor, config, chatglm).items():
                if name not in expected:
                    raise ModelDirError(f"{path}: tensor {key!r} has no place in the model")
                if tuple(value.shape) != expected[name]:
                    raise ModelDirError(
                        f"{path}: tensor {key!r} has shape {tuple(tensor.shape)}, config.json implies "
                        f"{expected[name]} for {name}"
                    )
                stored_dtype = stored_dtype or value.dtype
                placer.place(name, value)
                placed.add(name)
        if progress is not None and task is not None:
            progress.advance(task)
    missing = sorted(set(expected) - placed)
    if missing:
        where = files[0] if len(files) == 1 else f"the weight files of {base_dir}"
        names = ", ".join((chatglm2_name_of(m) if chatglm else m) for m in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ModelDirError(f"{where} lacks tensor {names}{more}", "the checkpoint is incomplete or truncated")
    placer.finish()
    if device.type == "cpu":
        model.lm_head.register_forward_pre_hook(_standard_strides)
    # Non-persistent buffers (the rotary inverse frequencies) are still on the meta device: rebuild.
    model.model.rotary_emb = type(model.model.rotary_emb)(config=config).to(device)
    model.config.dtype = stored_dtype
    return model


def _standard_strides(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Give the lm_head's input fresh strides. ``generate`` passes it ``hidden[:, -1:, :]``, a view
    with the prompt's strides, and torch's CPU bf16 linear takes a path 100-400x slower for such a
    view (measured with torch 2.13: 12 s instead of 0.13 s per token for ChatGLM2-6B's lm_head)."""
    x = args[0]
    return (torch.empty_like(x, memory_format=torch.contiguous_format).copy_(x), *args[1:])


def model_memory_bytes(model: torch.nn.Module, device: torch.device) -> int:
    """CUDA memory allocated on GPU; otherwise the bytes of parameters, buffers and quantization
    statistics."""
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) + quantized_bytes(model)


def load_model(
    base_dir: Path,
    adapter_dir: Path | None,
    *,
    device: str = "auto",
    quantize: str | None = None,
    progress: bool = True,
) -> LoadedModel:
    """Load the base model once (native GLM or ChatGLM2, converted in memory) and attach the adapter.

    ``quantize``: ``4bit``/``8bit`` (bitsandbytes, CPU or CUDA), ``none``/None, or ``auto`` (see
    ``choose_precision``); quantization happens tensor by tensor while reading, from either format.
    """
    base_dir = Path(base_dir)
    raw_cfg = read_model_config(base_dir)
    tokenizer = load_tokenizer(base_dir)
    torch_device = resolve_device(device)
    config = model_config(base_dir, raw_cfg)
    precision = choose_precision(torch_device, quantize, parameter_count(config))
    identity = base_identity(base_dir)
    console = Console(stderr=True)
    with _progress(progress, console) as bar:
        model = load_weights(base_dir, config, chatglm=raw_cfg["model_type"] == "chatglm", device=torch_device,
                             dtype=precision.dtype, quantize=precision.quantize, progress=bar)
    model.eval()
    model.requires_grad_(False)
    global BASE_LOADS
    BASE_LOADS += 1
    loaded = LoadedModel(model=model, tokenizer=tokenizer, device=torch_device, dtype=precision.dtype,
                         identity=identity, adapter_identity=None, memory_bytes=0, base_dir=base_dir,
                         adapter_dir=None, quantize=precision.quantize)
    if adapter_dir is not None:
        attach_adapter(loaded, Path(adapter_dir), "default")
    loaded.memory_bytes = model_memory_bytes(loaded.model, torch_device)
    if progress:
        what = f"{base_dir.name}" + (f" + {Path(adapter_dir).name}" if adapter_dir else "")
        console.print(f"Loaded {what} on {torch_device} ({precision.describe()}): "
                      f"{loaded.memory_bytes / 2**30:.2f} GiB")
    return loaded
