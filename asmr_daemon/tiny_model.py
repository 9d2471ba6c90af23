"""Tiny real models built in seconds, for ``asmr-daemon demo`` and the test kit (DESIGN §10).

A 2-layer ``GlmForCausalLM`` with a ~500-piece SentencePiece tokenizer, saved as an original ChatGLM2
checkpoint (or natively), plus a LoRA trained with the product's own ``train_lora`` until greedy
decoding reproduces every training pair exactly. Everything is seeded: building twice gives the same
files, so tests can compare bytes and outputs written by hand.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import GlmConfig, GlmForCausalLM

from asmr_daemon import tiny_chatglm2
from asmr_daemon.adapter_files import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    METADATA_FILE,
    adapter_metadata,
    save_adapter,
    write_json,
)
from asmr_daemon.config import DEFAULT_TEMPLATE
from asmr_daemon.engine.tokenizer import SPECIAL_TOKENS, TOKENIZER_FILE
from asmr_daemon.training import EpochReport, TrainConfig, TrainResult
from asmr_daemon.training_data import TrainingPair, pair_prompt

# The marker a test kit's stand-in remote code writes if anything ever imports it (DESIGN §4).
IMPORT_MARKER = "REMOTE_CODE_WAS_IMPORTED"
REMOTE_CODE_FILES = ("modeling_chatglm.py", "configuration_chatglm.py", "tokenization_chatglm.py")
# What a LoRA trained on Kaggle from the hub checkpoint records as its base.
CHATGLM2_HUB_NAME = "THUDM/chatglm2-6b"
TINY_NATIVE_NAME = "asmr-daemon/tiny-glm"

# DESIGN §10, refined: with the linear decay and the compact tokenizer the 27 demo pairs are exact
# after ~25 epochs (a few seconds on 2 CPU cores); ``epochs`` is the cap the decay runs to.
TINY_TRAIN = TrainConfig(rank=16, alpha=32, lr=3e-3, batch_size=4, epochs=80, seed=0, lr_schedule="linear")
_FIRST_CHECK_EPOCH = 10
_CHECK_EVERY = 5

_REMOTE_CODE = '''"""Stand-in for ChatGLM2's remote code, written by the asmr-daemon test kit.

asmr-daemon must never execute Python files from a model directory. If this module is ever
imported, it leaves a marker file next to itself that the tests look for.
"""
import pathlib

pathlib.Path(__file__).with_name("{marker}").write_text(__name__ + "\\n", encoding="utf-8")
raise ImportError("asmr-daemon test kit: remote code in a model directory must never run")
'''

# Shaped like chatglm2-6b's tokenizer_config.json (its auto_map points at remote code we never run).
_TOKENIZER_CONFIG = {
    "name_or_path": CHATGLM2_HUB_NAME,
    "remove_space": False,
    "do_lower_case": False,
    "tokenizer_class": "ChatGLMTokenizer",
    "auto_map": {"AutoTokenizer": ["tokenization_chatglm.ChatGLMTokenizer", None]},
}


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------


def corpus_for(pairs: Sequence[TrainingPair], template: str = DEFAULT_TEMPLATE) -> list[str]:
    """Tokenizer training text: every full prompt and every target, so both tokenise compactly."""
    return [pair_prompt(p, template) for p in pairs] + [p.target for p in pairs]


def train_sentencepiece(lines: Sequence[str], out_path: Path, vocab_size: int = 500) -> Path:
    """Train a ChatGLM2-style unigram SentencePiece model on ``lines`` and write it to ``out_path``.

    ``vocab_size`` is raised when the corpus has more distinct characters than fit (coverage is 1.0
    and byte fallback needs 256 pieces); it is a soft limit, since a small corpus cannot fill it.
    """
    import sentencepiece as spm

    chars = {ch for line in lines for ch in line if ch != "\n"}
    needed = len(chars) + 256 + 3 + 1 + 16  # chars, bytes, unk/bos/eos, "\n", some merges
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(lines)),
        model_writer=model,
        model_type="unigram",
        vocab_size=max(vocab_size, needed),
        hard_vocab_limit=False,
        character_coverage=1.0,
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        # Across scripts too: the template's "问：将下面的日文翻译成中文：" becomes one piece instead of
        # 14, which halves the tiny model's sequence length (and its training time).
        split_by_unicode_script=False,
        user_defined_symbols=["\n"],
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,  # one thread: the same pieces every time
        minloglevel=2,
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(model.getvalue())
    return out_path


# ---------------------------------------------------------------------------------------------
# Base model
# ---------------------------------------------------------------------------------------------


def tiny_glm_config(sp_vocab_size: int, *, hidden_size: int = 128, intermediate_size: int = 256,
                    num_attention_heads: int = 4, num_key_value_heads: int = 2, head_dim: int = 32) -> GlmConfig:
    """The tiny architecture: ChatGLM2's shape (MQA, partial rotary, qkv bias) at 128 hidden.

    head_dim 32 because vLLM's CPU attention rejects smaller/odd head sizes (DESIGN §9). The vocab
    holds the SentencePiece pieces, then the five specials, padded to a multiple of 64 like 65024.
    Unit tests shrink the shape further with the keyword arguments.
    """
    vocab = -(-(sp_vocab_size + len(SPECIAL_TOKENS)) // 64) * 64
    return GlmConfig(
        vocab_size=vocab,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=2,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        head_dim=head_dim,
        rms_norm_eps=1e-5,
        max_position_embeddings=2048,
        attention_bias=True,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        architectures=["GlmForCausalLM"],
    )


def _random_model(config: GlmConfig, seed: int) -> GlmForCausalLM:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GlmForCausalLM(config)
        # DESIGN §10: with std 0.02 the frozen lm_head caps every logit near 2 and a LoRA on the
        # other layers can barely move the loss; a wide lm_head lets the tiny model learn.
        torch.nn.init.normal_(model.lm_head.weight, std=0.3)
    with torch.no_grad():
        for p in model.parameters():
            # Round through fp16 (how ChatGLM2 is stored) so both formats hold the same function.
            p.copy_(p.half().float())
    model.eval()
    return model


def build_tiny_base(
    out_dir: Path,
    corpus_lines: Sequence[str],
    *,
    seed: int = 0,
    fmt: Literal["chatglm", "glm"] = "chatglm",
) -> Path:
    """Write a tiny random base model with its tokenizer into ``out_dir``.

    ``fmt="chatglm"``: an original ChatGLM2 checkpoint (config.json, fp16 ``pytorch_model.bin``,
    ``tokenizer.model``, ``tokenizer_config.json`` and stand-in remote code that leaves
    ``IMPORT_MARKER`` if imported). ``fmt="glm"``: a native checkpoint (``save_pretrained``
    safetensors + ``tokenizer.model``). The same seed and corpus give the same weights in both.
    """
    import sentencepiece as spm

    if fmt not in ("chatglm", "glm"):
        raise ValueError(f"fmt must be 'chatglm' or 'glm', not {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sp_path = train_sentencepiece(corpus_lines, out_dir / TOKENIZER_FILE)
    sp_size = spm.SentencePieceProcessor(model_file=str(sp_path)).get_piece_size()
    config = tiny_glm_config(sp_size)
    model = _random_model(config, seed)
    if fmt == "glm":
        from transformers.utils import logging as hf_logging

        quiet = not hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Writing model shards" bar for a 2 MB file
        try:
            model.save_pretrained(str(out_dir), safe_serialization=True)
        finally:
            if not quiet:
                hf_logging.enable_progress_bar()
        return out_dir
    write_json(out_dir / "config.json", tiny_chatglm2.chatglm2_config_from_glm(config))
    sd = tiny_chatglm2.chatglm2_state_dict_from_native(model.state_dict(), config)
    torch.save({k: v.detach().half().contiguous().clone() for k, v in sd.items()}, out_dir / "pytorch_model.bin")
    write_json(out_dir / "tokenizer_config.json", _TOKENIZER_CONFIG)
    for name in REMOTE_CODE_FILES:
        (out_dir / name).write_text(_REMOTE_CODE.format(marker=IMPORT_MARKER), encoding="utf-8")
    return out_dir


# ---------------------------------------------------------------------------------------------
# Adapter
# ---------------------------------------------------------------------------------------------


class TinyTrainingFailed(RuntimeError):
    """The tiny model did not learn every pair exactly within the epoch cap."""


def greedy_translations(
    loaded: object,
    pairs: Sequence[TrainingPair],
    template: str = DEFAULT_TEMPLATE,
    *,
    max_new_tokens: int | None = None,
) -> list[str]:
    """Batched greedy translations of the pairs' sources through the real ``LocalBackend``.

    ``max_new_tokens`` defaults to the longest target's length + 8 (enough to see a runaway).
    """
    from asmr_daemon.engine.backend import LocalBackend

    backend = LocalBackend(loaded)  # type: ignore[arg-type]
    tok = backend.tokenizer
    prompts = [tok.encode_prompt(pair_prompt(p, template)) for p in pairs]
    limit = max_new_tokens or max(len(tok.encode_answer(p.target)) for p in pairs) + 8
    return [backend.decode(ids) for ids in backend.generate(prompts, max_new_tokens=limit)]


def train_demo_adapter(
    base_dir: Path,
    pairs: Sequence[TrainingPair],
    out_dir: Path,
    *,
    fmt: Literal["chatglm", "native"] = "chatglm",
    epochs: int = TINY_TRAIN.epochs,
    config: TrainConfig = TINY_TRAIN,
    native_dir: Path | None = None,
    progress: bool = False,
) -> Path:
    """Train a LoRA on ``base_dir`` until greedy decoding gives every target exactly; save it.

    The base is loaded with the product's ``load_model`` (on CPU, for reproducibility) and checked
    with the real ``LocalBackend``: from epoch 10, every 5 epochs; ``epochs`` is the cap, after which
    ``TinyTrainingFailed`` is raised. ``fmt="native"`` writes the adapter as trained;
    ``fmt="chatglm"`` writes the exactly equivalent ChatGLM2-named adapter (``query_key_value``,
    ``dense``, ``dense_h_to_4h``, ``dense_4h_to_h``), shaped like one trained on Kaggle. The native
    adapter is also kept in ``native_dir`` when given.
    """
    from asmr_daemon.engine.loading import load_model

    if fmt not in ("chatglm", "native"):
        raise ValueError(f"fmt must be 'chatglm' or 'native', not {fmt!r}")
    loaded = load_model(Path(base_dir), None, device="cpu", progress=False)
    cfg = replace(config, epochs=epochs)
    threads = torch.get_num_threads()
    # One thread: tensors this small gain nothing from more (and lose a lot when the cores are
    # shared), and float sums then add up in the same order on every machine -> the same adapter.
    torch.set_num_threads(1)
    try:
        result, state = _train_until_exact(loaded, pairs, cfg, progress)
    finally:
        torch.set_num_threads(threads)
    if not state["exact"]:
        shown = "; ".join(f"{s!r}: want {t!r}, got {g!r}" for s, t, g in state["wrong"][:3])
        raise TinyTrainingFailed(
            f"the tiny model did not reproduce every pair after {len(result.train_losses)} epochs "
            f"(last loss {result.train_losses[-1]:.4f}): {shown}"
        )

    from asmr_daemon.engine.compat import base_fingerprint

    identity = {"fingerprint": base_fingerprint(Path(base_dir)), "content": content_identity(Path(base_dir))}
    meta = adapter_metadata(cfg, pairs, base_identity=identity, result=result)
    meta["created"] = None  # built from sources, reproducibly: no timestamp
    out_dir = Path(out_dir)
    if fmt == "native":
        save_adapter(result.model, out_dir, metadata=meta, base_model_name_or_path=TINY_NATIVE_NAME)
        if native_dir is not None:
            _copy_dir(out_dir, Path(native_dir))
        return out_dir
    with tempfile.TemporaryDirectory() as tmp:
        native = Path(native_dir) if native_dir is not None else Path(tmp) / "native"
        save_adapter(result.model, native, metadata=meta, base_model_name_or_path=TINY_NATIVE_NAME)
        write_chatglm2_adapter(native, out_dir, result.model.get_base_model().config)
    return out_dir


def _train_until_exact(
    loaded: Any, pairs: Sequence[TrainingPair], cfg: TrainConfig, progress: bool
) -> tuple[TrainResult, dict[str, Any]]:
    """Train, decoding greedily every few epochs; stop as soon as every pair comes out exact."""
    from asmr_daemon.training import train_lora

    state: dict[str, Any] = {"exact": False, "wrong": []}

    def on_epoch(report: EpochReport) -> bool:
        if report.epoch < _FIRST_CHECK_EPOCH or report.epoch % _CHECK_EVERY:
            return False
        got = greedy_translations(replace(loaded, model=report.model), pairs, cfg.template)
        wrong = [(p.source, p.target, g) for p, g in zip(pairs, got, strict=True) if g != p.target]
        state.update(exact=not wrong, wrong=wrong)
        return not wrong

    result = train_lora(loaded.model, loaded.tokenizer, pairs, cfg, progress=progress, on_epoch=on_epoch)
    return result, state


def content_identity(model_dir: Path) -> str:
    """sha256 over a (small) model directory's config and weight files' bytes: equal for equal builds.

    The engine's ``base_identity`` uses file sizes and mtimes (hashing 12 GB is too slow), so it differs
    between two identical builds; tiny models can afford to hash the content.
    """
    h = hashlib.sha256()
    for path in sorted(Path(model_dir).iterdir()):
        if path.name == "config.json" or path.suffix in (".bin", ".safetensors"):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def write_chatglm2_adapter(native_dir: Path, out_dir: Path, glm_config: GlmConfig) -> Path:
    """Rewrite a native adapter directory as the equivalent ChatGLM2-named one (rank-3r trick)."""
    from safetensors.torch import load_file, save_file

    sd = load_file(str(Path(native_dir) / ADAPTER_WEIGHTS))
    cfg = json.loads((Path(native_dir) / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    new_sd, new_cfg = tiny_chatglm2.chatglm2_adapter_from_native(sd, cfg, glm_config)
    new_cfg["base_model_name_or_path"] = CHATGLM2_HUB_NAME
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sorted(new_sd.items())}, str(out_dir / ADAPTER_WEIGHTS),
              metadata={"format": "pt"})
    write_json(out_dir / ADAPTER_CONFIG, new_cfg)
    metadata = Path(native_dir) / METADATA_FILE  # the same training, so the same recorded base
    if metadata.is_file():
        shutil.copyfile(metadata, out_dir / METADATA_FILE)
    return out_dir


def _copy_dir(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
