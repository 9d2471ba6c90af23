"""LoRA adapters on a resident base model: read, convert ChatGLM2 names, check shapes, attach.

Adapters are attached un-merged, so a daemon can hold several and switch between them without
reloading the base.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import GlmConfig

from asmr_daemon.engine import chatglm2
from asmr_daemon.errors import AdapterError

if TYPE_CHECKING:
    from asmr_daemon.engine.loading import LoadedModel

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


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
            # nn.Linear, bitsandbytes' subclasses and peft's LoRA wrappers all carry these
            fan_in, fan_out = getattr(module, "in_features"), getattr(module, "out_features")
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


def base_of(model: Any) -> Any:
    """The transformers model under a peft model (its adapters injected), else the model itself."""
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
    base = base_of(loaded.model)
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
    result: Any = set_peft_model_state_dict(model, prepared.state_dict, adapter_name=name)
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
