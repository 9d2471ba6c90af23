"""Load the base model (native GLM or original ChatGLM2 checkpoint) and attach LoRA adapters.

One path for tests and real use: a ChatGLM2 directory is read tensor by tensor, converted in memory
(``chatglm2.py``) and assigned into a ``GlmForCausalLM`` built on the meta device, so the weights are
never held twice. Python files in a model directory are never imported: we only read
``config.json``, weight files and ``tokenizer.model``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from transformers import GlmConfig, GlmForCausalLM

from asmr_daemon.engine import chatglm2
from asmr_daemon.engine.tokenizer import ChatGLM2Tokenizer, load_tokenizer
from asmr_daemon.errors import AdapterError, DeviceError, ModelDirError

SUPPORTED_MODEL_TYPES = ("glm", "chatglm")
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


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
# Devices
# ---------------------------------------------------------------------------------------------


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


def _quantization_config(quantize: str | None, device: torch.device) -> Any:
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


# ---------------------------------------------------------------------------------------------
# Reading a model directory
# ---------------------------------------------------------------------------------------------


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


def _read_tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
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


# ---------------------------------------------------------------------------------------------
# Building the base model
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _progress(enabled: bool, console: Console) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with progress:
        yield progress


def load_chatglm2_native(
    base_dir: Path,
    raw_cfg: dict,
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    progress: Progress | None = None,
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
        for key, tensor in _read_tensors(path):
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
        names = ", ".join(chatglm2.chatglm2_name_of(m) for m in missing[:3])
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
    quantization = _quantization_config(quantize, torch_device)
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


# ---------------------------------------------------------------------------------------------
# Adapters
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_peft_warnings() -> Iterator[None]:
    """peft 0.21 reads transformers' deprecated ``is_gradient_checkpointing`` (a FutureWarning on
    every wrap); nothing a user can act on, so it stays out of the daemon's log."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def read_adapter(adapter_dir: Path) -> tuple[dict[str, torch.Tensor], dict, Path, str]:
    """``(state_dict, adapter_config, weights_path, identity)`` of a peft adapter directory (unconverted)."""
    adapter_dir = Path(adapter_dir)
    cfg_path = adapter_dir / ADAPTER_CONFIG
    if not adapter_dir.is_dir():
        raise AdapterError(f"adapter directory {adapter_dir} does not exist")
    if not cfg_path.is_file():
        raise AdapterError(f"{cfg_path} not found: not a peft adapter directory")
    weights = next((adapter_dir / n for n in ADAPTER_WEIGHTS if (adapter_dir / n).is_file()), None)
    if weights is None:
        raise AdapterError(f"no adapter weights in {adapter_dir}: expected {' or '.join(ADAPTER_WEIGHTS)}")
    cfg_bytes = cfg_path.read_bytes()
    try:
        cfg = json.loads(cfg_bytes)
    except ValueError as exc:
        raise AdapterError(f"{cfg_path} is not valid JSON: {exc}") from exc
    weight_bytes = weights.read_bytes()
    try:
        if weights.suffix == ".safetensors":
            from safetensors.torch import load as load_safetensors

            sd = load_safetensors(weight_bytes)
        else:
            sd = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # damaged files raise many types
        raise AdapterError(f"cannot read adapter weights {weights}: {exc}") from exc
    identity = hashlib.sha256(cfg_bytes + b"\0" + weight_bytes).hexdigest()
    return sd, cfg, weights, identity


def check_adapter_shapes(sd: dict[str, torch.Tensor], base: torch.nn.Module, config: GlmConfig, weights: Path) -> None:
    """Every LoRA tensor must fit the module it targets in this base model."""
    hidden = config.hidden_size
    # lora_A first (sorted, so the message does not depend on file order): their input width is the
    # hidden size for most modules, which is the mismatch a user understands ("wrong base model").
    for key, value in sorted(sd.items(), key=lambda kv: ("_A" not in kv[0], kv[0])):
        module_path, _, _ = key.removeprefix("base_model.model.").partition(".lora_")
        try:
            module = base.get_submodule(module_path)
        except AttributeError:
            raise AdapterError(
                f"{weights}: tensor {key} targets {module_path}, which this base model does not have",
                "the adapter was trained for another base model",
            ) from None
        if isinstance(module, torch.nn.Embedding):
            fan_in, fan_out = module.num_embeddings, module.embedding_dim
        else:
            fan_in, fan_out = module.in_features, module.out_features
        is_a = ".lora_A" in key or ".lora_embedding_A" in key
        got = value.shape[1] if is_a else value.shape[0]
        want = fan_in if is_a else fan_out
        if got != want:
            if want == hidden:
                raise AdapterError(
                    f"adapter {weights} was trained for a model with hidden size {got}, this base has {hidden}"
                )
            raise AdapterError(
                f"adapter {weights}: tensor {key} has shape {tuple(value.shape)}, "
                f"which does not fit {module_path} ({fan_in} -> {fan_out})",
                "the adapter was trained for another base model",
            )


@dataclass(frozen=True)
class PreparedAdapter:
    """An adapter read, converted to native names and checked against a base model, not yet attached.

    Preparing is the slow part (reading and converting the weights); ``attach_prepared`` only
    touches the live model, so a daemon prepares in any thread and attaches on the model's own.
    """

    adapter_dir: Path
    identity: str
    state_dict: dict[str, torch.Tensor]
    lora_config: Any  # peft.LoraConfig


def _base_of(model: Any) -> torch.nn.Module:
    from peft import PeftModel

    return model.get_base_model() if isinstance(model, PeftModel) else model


def prepare_adapter(loaded: LoadedModel, adapter_dir: Path) -> PreparedAdapter:
    """Read ``adapter_dir``, convert ChatGLM2 names, check every tensor fits ``loaded``'s base model.

    Only reads the model (module shapes), so it may run in any thread while the model generates.
    Raises AdapterError for a missing, broken or mismatching adapter.
    """
    from peft import LoraConfig

    adapter_dir = Path(adapter_dir)
    raw_sd, raw_cfg, weights, identity = read_adapter(adapter_dir)
    base = _base_of(loaded.model)
    try:
        sd, cfg = chatglm2.convert_chatglm2_adapter(raw_sd, raw_cfg, base.config)
    except AdapterError as exc:
        raise AdapterError(f"{weights}: {exc.message}", exc.hint) from exc
    check_adapter_shapes(sd, base, base.config, weights)
    cfg = {k: v for k, v in cfg.items() if k not in ("base_model_name_or_path", "revision")}
    cfg["inference_mode"] = True
    try:
        lora_config = LoraConfig.from_peft_type(**cfg)
    except (TypeError, ValueError) as exc:
        raise AdapterError(f"{adapter_dir / ADAPTER_CONFIG}: unusable LoRA config: {exc}") from exc
    return PreparedAdapter(adapter_dir=adapter_dir, identity=identity, state_dict=sd, lora_config=lora_config)


def attach_prepared(loaded: LoadedModel, prepared: PreparedAdapter, name: str) -> str:
    """Add a prepared adapter under ``name`` to the resident model (wrapping it in a PeftModel the
    first time) without making it active. Call on the thread that owns the model."""
    from peft import PeftModel, set_peft_model_state_dict

    if isinstance(loaded.model, PeftModel):
        if name in loaded.model.peft_config:
            raise AdapterError(f"an adapter named {name!r} is already loaded")
        loaded.model.add_adapter(name, prepared.lora_config)
        model = loaded.model
    else:
        with quiet_peft_warnings():
            model = PeftModel(loaded.model, prepared.lora_config, adapter_name=name)
    result = set_peft_model_state_dict(model, prepared.state_dict, adapter_name=name)
    missing = [k for k in result.missing_keys if f".{name}." in k and "lora_" in k]
    if result.unexpected_keys or missing:
        if len(model.peft_config) > 1:  # a half-loaded adapter must not linger next to the others
            model.delete_adapter(name)
        raise AdapterError(
            f"adapter {prepared.adapter_dir} does not match its adapter_config.json: "
            f"unexpected {list(result.unexpected_keys)[:3]}, missing {missing[:3]}"
        )
    model.requires_grad_(False)
    model.eval()
    loaded.model = model
    return prepared.identity


def attach_adapter(loaded: LoadedModel, adapter_dir: Path, name: str = "default") -> str:
    """Attach a peft LoRA under ``name`` (un-merged, so adapters can be switched) and make it active.

    ChatGLM2-named adapters are converted in memory. Returns the adapter identity. A second call with
    another name adds a second adapter to the same base without reloading it.
    """
    prepared = prepare_adapter(loaded, adapter_dir)
    identity = attach_prepared(loaded, prepared, name)
    loaded.model.set_adapter(name, inference_mode=True)
    loaded.adapter_identity = identity
    loaded.adapter_dir = Path(adapter_dir)
    loaded.adapter_name = name
    return identity


# ---------------------------------------------------------------------------------------------
# Cheap checks (``doctor``): read configs and file lists, never the weights of the base model
# ---------------------------------------------------------------------------------------------


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


def inspect_adapter(adapter_dir: Path) -> str:
    """One line describing a LoRA adapter directory, or the AdapterError that attaching it would raise."""
    sd, cfg, weights, _ = read_adapter(adapter_dir)
    try:
        chatglm2.check_adapter_config(cfg)
    except AdapterError as exc:
        raise AdapterError(f"{Path(adapter_dir) / ADAPTER_CONFIG}: {exc.message}", exc.hint) from exc
    targets = cfg.get("target_modules")
    targets = ", ".join(sorted(targets)) if isinstance(targets, list) else str(targets)
    return f"LoRA r={cfg.get('r')} alpha={cfg.get('lora_alpha')} on {targets}; {len(sd)} tensors in {weights.name}"
