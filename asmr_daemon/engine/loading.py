"""Load the base model (native GLM or original ChatGLM2 checkpoint) and attach LoRA adapters.

One path for tests and real use: a ChatGLM2 directory is read tensor by tensor, converted in memory
(``chatglm2.py``) and assigned into a ``GlmForCausalLM`` built on the meta device, so the weights are
never held twice. Python files in a model directory are never imported: we only read
``config.json``, weight files and ``tokenizer.model``.
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
from transformers import GlmForCausalLM

from asmr_daemon.engine import chatglm2
from asmr_daemon.engine.adapters import attach_adapter
from asmr_daemon.engine.chatglm2_names import chatglm2_name_of
from asmr_daemon.engine.devices import default_dtype, quantization_config, resolve_device
from asmr_daemon.engine.model_dir import base_identity, read_model_config, read_tensors, weight_files
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


def load_chatglm2_native(
    base_dir: Path,
    raw_cfg: dict,
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    progress: AnyProgress | None = None,
) -> GlmForCausalLM:
    """Read a ChatGLM2 checkpoint into a native ``GlmForCausalLM``, strictly.

    ``dtype=None`` keeps the stored dtype (what ``convert`` wants). Missing, unknown or misshapen
    tensors raise ModelDirError naming the file and the tensor.
    """
    config = chatglm2.glm_config_from_chatglm2(raw_cfg)
    files = weight_files(base_dir)
    with torch.device("meta"):
        model = GlmForCausalLM(config)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    loaded: dict[str, torch.Tensor] = {}
    task = progress.add_task("Loading ChatGLM2 weights", total=len(files)) if progress else None
    for path in files:
        for key, tensor in read_tensors(path):
            try:
                converted = chatglm2.convert_chatglm2_state_dict({key: tensor}, config)
            except ModelDirError as exc:
                raise ModelDirError(f"{path}: {exc.message}", "is this a ChatGLM2-6B checkpoint?") from exc
            for name, value in converted.items():
                if name not in expected:
                    raise ModelDirError(f"{path}: tensor {key!r} has no place in the model")
                if tuple(value.shape) != tuple(expected[name]):
                    raise ModelDirError(
                        f"{path}: tensor {key!r} has shape {tuple(tensor.shape)}, config.json implies "
                        f"{tuple(expected[name])} for {name}"
                    )
                loaded[name] = value.to(device=device, dtype=dtype or value.dtype)
        if progress is not None and task is not None:
            progress.advance(task)
    missing = sorted(set(expected) - set(loaded))
    if missing:
        where = files[0] if len(files) == 1 else f"the weight files of {base_dir}"
        names = ", ".join(chatglm2_name_of(m) for m in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ModelDirError(f"{where} lacks tensor {names}{more}", "the checkpoint is incomplete or truncated")
    model.load_state_dict(loaded, strict=True, assign=True)
    # Non-persistent buffers (the rotary inverse frequencies) are still on the meta device: rebuild.
    model.model.rotary_emb = type(model.model.rotary_emb)(config=config).to(device)
    model.config.dtype = next(iter(loaded.values())).dtype
    return model


def _load_native(base_dir: Path, device: torch.device, dtype: torch.dtype, quantization: Any) -> GlmForCausalLM:
    weight_files(base_dir)  # a clear message when weights are missing
    kwargs: dict[str, Any] = {"dtype": dtype, "output_loading_info": True, "trust_remote_code": False}
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        kwargs["device_map"] = {"": device.index or 0}
    elif device.type == "cuda":
        kwargs["device_map"] = {"": device}
    from transformers.utils import logging as hf_logging

    # Our own progress display covers loading; transformers' per-tensor bar would be a second one.
    hf_logging.disable_progress_bar()
    try:
        model, info = GlmForCausalLM.from_pretrained(str(base_dir), **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelDirError(f"cannot load the GLM checkpoint in {base_dir}: {exc}") from exc
    problems = [f"missing {k}" for k in info.get("missing_keys", [])]
    problems += [f"unexpected {k}" for k in info.get("unexpected_keys", [])]
    problems += [f"mismatched {m[0] if isinstance(m, tuple) else m}" for m in info.get("mismatched_keys", [])]
    if problems:
        raise ModelDirError(f"weights in {base_dir} do not match its config.json: {', '.join(problems[:3])}")
    return model


def model_memory_bytes(model: torch.nn.Module, device: torch.device) -> int:
    """CUDA memory allocated on GPU; otherwise the bytes of parameters and buffers."""
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def load_model(
    base_dir: Path,
    adapter_dir: Path | None,
    *,
    device: str = "auto",
    quantize: str | None = None,
    progress: bool = True,
) -> LoadedModel:
    """Load the base model once (native GLM or converted ChatGLM2) and attach the adapter, if any.

    Quantization (``4bit``/``8bit``, CUDA + bitsandbytes) needs a native checkpoint: run
    ``asmr-daemon convert`` once first. Converting 12 GB on every start only to quantize it again would
    be slow, and an implicit converted cache would silently take 12 GB of disk.
    """
    base_dir = Path(base_dir)
    raw_cfg = read_model_config(base_dir)
    tokenizer = load_tokenizer(base_dir)
    torch_device = resolve_device(device)
    quantization = quantization_config(quantize, torch_device)
    dtype = default_dtype(torch_device)
    if quantization is not None and raw_cfg["model_type"] == "chatglm":
        raise ModelDirError(
            f"{base_dir} is an original ChatGLM2 checkpoint; quantized loading needs a native one",
            f"run `asmr-daemon convert {base_dir} NATIVE_DIR` once and use NATIVE_DIR",
        )
    identity = base_identity(base_dir)
    console = Console(stderr=True)
    with _progress(progress, console) as bar:
        if raw_cfg["model_type"] == "chatglm":
            model = load_chatglm2_native(base_dir, raw_cfg, device=torch_device, dtype=dtype, progress=bar)
        else:
            task = bar.add_task("Loading GLM weights", total=None) if bar else None
            model = _load_native(base_dir, torch_device, dtype, quantization)
            if bar is not None and task is not None:
                bar.update(task, total=1, completed=1)
    model.eval()
    model.requires_grad_(False)
    global BASE_LOADS
    BASE_LOADS += 1
    loaded = LoadedModel(
        model=model,
        tokenizer=tokenizer,
        device=torch_device,
        dtype=dtype,
        identity=identity,
        adapter_identity=None,
        memory_bytes=0,
        base_dir=base_dir,
        adapter_dir=None,
    )
    if adapter_dir is not None:
        attach_adapter(loaded, Path(adapter_dir), "default")
    loaded.memory_bytes = model_memory_bytes(loaded.model, torch_device)
    if progress:
        what = f"{base_dir.name}" + (f" + {Path(adapter_dir).name}" if adapter_dir else "")
        console.print(
            f"Loaded {what} on {torch_device} ({str(dtype).removeprefix('torch.')}"
            f"{', ' + quantize if quantize else ''}): {loaded.memory_bytes / 2**30:.2f} GiB"
        )
    return loaded
