"""Adapter <-> base compatibility and provenance, from files alone: the base's ``config.json`` and
the adapter's weights *header* (safetensors header, or a memory-mapped ``.bin``), never a model load.

A 6B base takes minutes to load; an adapter for another model (a GPT-2 LoRA on ``c_attn``, a LoRA
of another hidden size or with more layers) must be refused before that, with the same verdict
``doctor`` shows. ``adapters.check_adapter_shapes`` still checks the live modules after the load.

Provenance: the identity of a base is a *fingerprint* -- sha256 over its architecture and a few
rows of a few weight tensors, taken in native names and as float32. A path differs between Kaggle
and home, and ``base_identity`` (sizes, mtimes) differs between two copies of the same files; the
fingerprint is the same for an original ChatGLM2 checkpoint and its ``convert`` output, and for
fp16 and fp32 copies, but differs for another base of the same shape.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asmr_daemon.errors import AdapterError

METADATA_FILE = "asmr_adapter.json"  # written by training.save_adapter
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_PEFT_PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"^(?P<module>.+?)\.(?P<part>lora_A|lora_B|lora_embedding_A|lora_embedding_B)\b")
_LAYER = re.compile(r"^(?:model\.layers|transformer\.encoder\.layers)\.(\d+)\.")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # "THUDM/chatglm2-6b", not a path


@dataclass(frozen=True)
class BaseShape:
    """What an adapter must fit, from ``config.json`` (ChatGLM2 keys are translated)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int

    def modules(self) -> dict[str, tuple[int, int]]:
        """Every module a LoRA may target -> (in, out), in native and in ChatGLM2 names."""
        q, kv, h, ffn = self.heads * self.head_dim, self.kv_heads * self.head_dim, self.hidden, self.intermediate
        table = {"model.embed_tokens": (self.vocab, h), "lm_head": (h, self.vocab),
                 "transformer.embedding.word_embeddings": (self.vocab, h), "transformer.output_layer": (h, self.vocab)}
        for i in range(self.layers):
            native, glm2 = f"model.layers.{i}.", f"transformer.encoder.layers.{i}."
            table |= {native + "self_attn.q_proj": (h, q), native + "self_attn.k_proj": (h, kv),
                      native + "self_attn.v_proj": (h, kv), native + "self_attn.o_proj": (q, h),
                      native + "mlp.gate_up_proj": (h, 2 * ffn), native + "mlp.down_proj": (ffn, h),
                      glm2 + "self_attention.query_key_value": (h, q + 2 * kv),
                      glm2 + "self_attention.dense": (q, h),
                      glm2 + "mlp.dense_h_to_4h": (h, 2 * ffn), glm2 + "mlp.dense_4h_to_h": (ffn, h)}
        return table

    def numbers(self) -> tuple[int, ...]:
        return (self.hidden, self.layers, self.heads, self.kv_heads, self.head_dim, self.intermediate, self.vocab)


def base_shape(base_dir: Path) -> BaseShape:
    """The base's shape from its ``config.json`` (ModelDirError when it is not a usable model dir)."""
    from asmr_daemon.engine import chatglm2
    from asmr_daemon.engine.model_dir import read_model_config

    raw = read_model_config(Path(base_dir))
    if raw["model_type"] == "chatglm":
        cfg = chatglm2.glm_config_from_chatglm2(raw).to_dict()
    else:
        cfg = raw
    heads = int(cfg["num_attention_heads"])
    hidden = int(cfg["hidden_size"])
    return BaseShape(hidden=hidden, layers=int(cfg["num_hidden_layers"]), heads=heads,
                     kv_heads=int(cfg.get("num_key_value_heads") or heads),
                     head_dim=int(cfg.get("head_dim") or hidden // heads),
                     intermediate=int(cfg["intermediate_size"]), vocab=int(cfg["vocab_size"]))


# ---------------------------------------------------------------------------------------------
# The adapter, header only
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterHeader:
    directory: Path
    config: dict[str, Any]
    weights: Path
    shapes: dict[str, tuple[int, ...]]  # tensor name -> shape


def read_adapter_header(adapter_dir: Path) -> AdapterHeader:
    """``adapter_config.json`` and the tensor shapes of the weights file, without reading the weights."""
    adapter_dir = Path(adapter_dir)
    cfg_path = adapter_dir / ADAPTER_CONFIG
    if not adapter_dir.is_dir():
        raise AdapterError(f"adapter directory {adapter_dir} does not exist", "check --adapter / [model] adapter")
    if not cfg_path.is_file():
        raise AdapterError(f"{cfg_path} not found: {adapter_dir} is not a peft adapter directory",
                           "point --adapter at the folder holding adapter_config.json")
    weights = next((adapter_dir / n for n in ADAPTER_WEIGHTS if (adapter_dir / n).is_file()), None)
    if weights is None:
        raise AdapterError(f"no adapter weights in {adapter_dir}: expected {' or '.join(ADAPTER_WEIGHTS)}",
                           "copy the whole adapter folder")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdapterError(f"{cfg_path} is not valid JSON ({exc})", "copy the adapter folder again") from None
    if not isinstance(config, dict):
        raise AdapterError(f"{cfg_path} is not a JSON object", "copy the adapter folder again")
    try:
        shapes = dict(_tensor_shapes(weights))
    except Exception as exc:  # damaged files raise many types
        raise AdapterError(f"cannot read adapter weights {weights} ({exc})", "copy the adapter folder again") from None
    return AdapterHeader(directory=adapter_dir, config=config, weights=weights, shapes=shapes)


def _tensor_shapes(path: Path) -> Iterator[tuple[str, tuple[int, ...]]]:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                yield key, tuple(f.get_slice(key).get_shape())
        return
    import torch

    sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    for key, value in sd.items():
        yield key, tuple(value.shape)


# ---------------------------------------------------------------------------------------------
# Compatibility
# ---------------------------------------------------------------------------------------------


def check_compatible(adapter_dir: Path, base_dir: Path) -> str:
    """Refuse (AdapterError) an adapter that ``load_model`` would refuse after loading the base, or
    that targets modules of another model; else a one-line description of the adapter."""
    from asmr_daemon.engine import chatglm2

    header = read_adapter_header(adapter_dir)
    shape = base_shape(base_dir)
    try:
        chatglm2.check_adapter_config(header.config)
    except AdapterError as exc:
        raise AdapterError(f"{header.directory / ADAPTER_CONFIG}: {exc.message}", exc.hint) from None
    table = shape.modules()
    ranks: dict[str, int] = {}
    for key, dims in sorted(header.shapes.items(), key=lambda kv: ("_A" not in kv[0], kv[0])):
        match = _LORA_KEY.match(key.removeprefix(_PEFT_PREFIX))
        if match is None:
            raise AdapterError(f"{header.weights}: tensor {key} is not a LoRA weight",
                               "only LoRA adapters (peft) are supported")
        module, part = match.group("module"), match.group("part")
        if module not in table:
            raise AdapterError(_foreign_module_message(header, module, shape), _ANOTHER_BASE)
        _check_dims(header, key, module, part, dims, table[module], shape, ranks)
    targets = sorted({m.group("module").rsplit(".", 1)[-1] for k in header.shapes
                      if (m := _LORA_KEY.match(k.removeprefix(_PEFT_PREFIX)))})
    return (f"LoRA r={header.config.get('r')} alpha={header.config.get('lora_alpha')} on {', '.join(targets)}; "
            f"{len(header.shapes)} tensors in {header.weights.name}, fit this base "
            f"(hidden {shape.hidden}, {shape.layers} layers)")


_ANOTHER_BASE = "use the base model this adapter was trained on, or an adapter trained on this base"


def _foreign_module_message(header: AdapterHeader, module: str, shape: BaseShape) -> str:
    layer = _LAYER.match(module)
    if layer is not None and int(layer.group(1)) >= shape.layers:
        deepest = max(int(m.group(1)) for k in header.shapes if (m := _LAYER.match(k.removeprefix(_PEFT_PREFIX))))
        return (f"adapter {header.directory} was trained for a model with at least {deepest + 1} layers, "
                f"this base has {shape.layers}")
    leaf = module.rsplit(".", 1)[-1]
    return (f"adapter {header.directory} targets {leaf} ({module}), a module this base (ChatGLM2/GLM) does not "
            "have: it was trained for another kind of model")


def _check_dims(header: AdapterHeader, key: str, module: str, part: str, dims: tuple[int, ...],
                want: tuple[int, int], shape: BaseShape, ranks: dict[str, int]) -> None:
    fan_in, fan_out = want
    if len(dims) != 2:
        raise AdapterError(f"{header.weights}: tensor {key} has shape {dims}, a LoRA weight is 2-D", _ANOTHER_BASE)
    is_a = part in ("lora_A", "lora_embedding_A")
    # peft stores lora_A as (r, in) and lora_B as (out, r); embedding LoRAs as (r, vocab) / (dim, r).
    got, rank = (dims[1], dims[0]) if is_a else (dims[0], dims[1])
    expected = fan_in if is_a else fan_out
    if got != expected:
        if is_a and expected == shape.hidden:
            raise AdapterError(f"adapter {header.directory} was trained for a model with hidden size {got}, "
                               f"this base has {shape.hidden}", _ANOTHER_BASE)
        raise AdapterError(f"adapter {header.directory}: tensor {key} has shape {dims}, which does not fit "
                           f"{module} ({fan_in} -> {fan_out}) of this base", _ANOTHER_BASE)
    if ranks.setdefault(module, rank) != rank:
        raise AdapterError(f"adapter {header.directory}: the LoRA ranks of {module} do not match "
                           f"({ranks[module]} and {rank})", "the adapter files are damaged; copy them again")


# ---------------------------------------------------------------------------------------------
# Provenance: the base an adapter was trained on
# ---------------------------------------------------------------------------------------------

# Tensors sampled for the fingerprint: native name -> ChatGLM2 name ({last} = the last layer).
_SAMPLED = {
    "model.embed_tokens.weight": "transformer.embedding.word_embeddings.weight",
    "model.norm.weight": "transformer.encoder.final_layernorm.weight",
    "model.layers.{last}.mlp.down_proj.weight": "transformer.encoder.layers.{last}.mlp.dense_4h_to_h.weight",
    "lm_head.weight": "transformer.output_layer.weight",
}
_ROWS_1D = 4096


def base_fingerprint(base_dir: Path) -> str | None:
    """The base's fingerprint (see the module docstring), or None when its weights cannot be sampled
    cheaply (a legacy non-zip ``.bin`` would have to be read whole)."""
    shape = base_shape(base_dir)
    last = shape.layers - 1
    wanted = {n.format(last=last): g.format(last=last) for n, g in _SAMPLED.items()}
    try:
        samples = _sample_tensors(Path(base_dir), wanted)
    except Exception:  # damaged or unusual files: the base check reports them; no fingerprint here
        return None
    if set(samples) != set(wanted):
        return None
    h = hashlib.sha256(json.dumps(shape.numbers()).encode())
    for name in sorted(samples):
        h.update(b"\0" + name.encode() + b"\0" + samples[name].contiguous().numpy().tobytes())
    return h.hexdigest()


def _sample_tensors(base_dir: Path, wanted: dict[str, str]) -> dict[str, Any]:
    from asmr_daemon.engine.model_dir import weight_files

    found: dict[str, Any] = {}
    for path in weight_files(base_dir):
        missing = {n: g for n, g in wanted.items() if n not in found}
        if not missing:
            break
        found |= _sample_file(path, missing)
    return found


def _rows(n: int) -> list[int]:
    return sorted({0, n // 2, n - 1})


def _sample_file(path: Path, wanted: dict[str, str]) -> dict[str, Any]:
    """A few rows (2-D) or the first values (1-D) of the wanted tensors in one file, as float32."""
    import torch

    out: dict[str, Any] = {}
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            for native, glm2 in wanted.items():
                key = native if native in keys else glm2 if glm2 in keys else None
                if key is None:
                    continue
                piece = f.get_slice(key)
                dims = piece.get_shape()
                if len(dims) == 1:
                    out[native] = piece[0:_ROWS_1D].float()
                else:
                    out[native] = torch.cat([piece[i:i + 1] for i in _rows(dims[0])]).float()
        return out
    sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # only touched pages are read
    for native, glm2 in wanted.items():
        tensor = sd.get(native, sd.get(glm2))
        if tensor is not None:
            out[native] = (tensor[:_ROWS_1D] if tensor.dim() == 1 else tensor[_rows(tensor.shape[0])]).float()
    return out


def short(identity: str | None) -> str:
    """12 hex digits per part (``BASE+ADAPTER`` identities keep both): enough to tell them apart."""
    return "+".join(part[:12] for part in (identity or "?").split("+"))


@dataclass(frozen=True)
class RecordedBase:
    """What an adapter says about the base it was trained on."""

    fingerprint: str | None  # asmr_adapter.json base.fingerprint (training records it)
    name: str | None  # base.dir, or peft's base_model_name_or_path


def recorded_base(adapter_dir: Path) -> RecordedBase:
    adapter_dir = Path(adapter_dir)
    meta = _read_json(adapter_dir / METADATA_FILE)
    raw = meta.get("base")
    base: dict[str, Any] = raw if isinstance(raw, dict) else {}
    peft_name = _read_json(adapter_dir / ADAPTER_CONFIG).get("base_model_name_or_path")
    fingerprint = base.get("fingerprint")
    name = base.get("dir") or peft_name
    return RecordedBase(fingerprint=str(fingerprint) if fingerprint else None,
                        name=str(name) if name else None)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def base_name(base_dir: Path) -> str | None:
    """The hub id a checkpoint calls itself (ChatGLM2's config.json has ``_name_or_path``)."""
    name = _read_json(Path(base_dir) / "config.json").get("_name_or_path")
    return str(name) if name else None


def check_provenance(adapter_dir: Path, base_dir: Path, *, allow_other_base: bool = False) -> str:
    """Refuse an adapter that records another base than ``base_dir`` (AdapterError naming both),
    unless ``allow_other_base``; else say what was compared.

    The fingerprint decides when the adapter records one; otherwise peft's hub id
    (``THUDM/chatglm3-6b`` vs a base whose config says ``THUDM/chatglm2-6b``). Paths are not
    compared: the same base lives at different paths on Kaggle and at home.
    """
    recorded = recorded_base(adapter_dir)
    if recorded.fingerprint:
        actual = base_fingerprint(base_dir)
        if actual is None:
            return f"recorded base fingerprint {short(recorded.fingerprint)}; this base's weights cannot be sampled"
        if actual == recorded.fingerprint:
            return f"trained on this base (fingerprint {short(actual)})"
        trained_on = f"{recorded.name} " if recorded.name else ""
        return _other_base(f"adapter {adapter_dir} was trained on the base {trained_on}(fingerprint "
                           f"{short(recorded.fingerprint)}), not on {base_dir} (fingerprint {short(actual)})",
                           allow_other_base)
    name, own = recorded.name, base_name(base_dir)
    if name and own and HUB_ID.match(name) and HUB_ID.match(own):
        if name.lower() == own.lower():
            return f"trained on {name}, as this base says it is"
        return _other_base(f"adapter {adapter_dir} was trained on {name}, but {base_dir} is {own}", allow_other_base)
    return f"the adapter records {name or 'no base'}; nothing to compare (no fingerprint)"


def _other_base(message: str, allow: bool) -> str:
    if allow:
        return f"{message}; used anyway (--allow-other-base)"
    raise AdapterError(message, "use the base it was trained on, or pass --allow-other-base to use it anyway; "
                       "on another base its translations may be garbage")
