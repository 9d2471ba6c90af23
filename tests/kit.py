"""The tiny-model test kit: a ChatGLM2-format base model, its LoRA (ChatGLM2 and native names), the
pairs it was trained on, a script and its expected translation written by hand.

Built with the product's own code (``asmr_daemon.tiny_model`` -> ``load_model`` -> ``train_lora``)
in a few seconds. Local runs cache the built kit in ``tests/.kit-cache/<hash of its sources>`` and copy
it into the session's temp dir (tests can never damage the cache); CI (``$CI`` set) or
``ASMR_KIT_CACHE=0`` always builds from scratch.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asmr_daemon
from asmr_daemon.demo import PAIRS_FILE, load_pairs
from asmr_daemon.tiny_model import (
    IMPORT_MARKER,
    build_tiny_base,
    corpus_for,
    train_demo_adapter,
)
from asmr_daemon.training_data import TrainingPair

TESTS_DIR = Path(__file__).resolve().parent
FIXTURES = TESTS_DIR / "fixtures" / "kit"
CACHE_ROOT = TESTS_DIR / ".kit-cache"
_PACKAGE = Path(asmr_daemon.__file__).resolve().parent
# Everything the built files depend on: a change to any of them rebuilds the cache.
KIT_SOURCES = (
    _PACKAGE / "tiny_model.py",
    _PACKAGE / "training.py",
    _PACKAGE / "training_data.py",
    _PACKAGE / "adapter_files.py",
    _PACKAGE / "engine" / "chatglm2.py",
    _PACKAGE / "engine" / "chatglm2_names.py",
    _PACKAGE / "tiny_chatglm2.py",
    _PACKAGE / "engine" / "compat.py",  # the base fingerprint recorded in asmr_adapter.json
    _PACKAGE / "engine" / "prompts.py",
    _PACKAGE / "config.py",  # DEFAULT_TEMPLATE
    PAIRS_FILE,
    Path(__file__).resolve(),
)
_COMPLETE = ".complete"
# What the review report says of the script's two お兄ちゃん lines under a glossary term the kit
# never learned (お兄ちゃん -> 欧尼酱): the glossary check runs last, so where the kit's output for
# such a prompt also trips an earlier check (its weights, and so that output, differ with the CPU
# that trained it), that check names the line.
GLOSSARY_MISS = r"(?:glossary term お兄ちゃん not used|U\+FFFD in the output|repetition|leftover kana|output too long)"


@dataclass(frozen=True)
class Kit:
    base_dir: Path  # original ChatGLM2 layout, with stand-in remote code that must never run
    native_base_dir: Path  # the same weights as a native GLM checkpoint (safetensors)
    adapter_dir: Path  # ChatGLM2 names (query_key_value, dense, ...), like a Kaggle-trained LoRA
    native_adapter_dir: Path  # the same LoRA as trained, native names (q_proj, ..., down_proj)
    pairs: list[TrainingPair]
    script: Path  # a copy of tests/fixtures/kit/script.txt, alone in its folder
    expected: Path  # a copy of the hand-written script.zh.txt, in another folder
    import_marker: Path  # appears if anything imports the base dir's Python files
    build_seconds: float  # 0.0 when it came from the cache


def kit_hash() -> str:
    h = hashlib.sha256()
    for path in KIT_SOURCES:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def build_kit_files(root: Path) -> None:
    """Build the model files into ``root`` (base/, native-base/, adapter/, native-adapter/)."""
    pairs = load_pairs()
    corpus = corpus_for(pairs)
    base = build_tiny_base(root / "base", corpus, seed=0, fmt="chatglm")
    build_tiny_base(root / "native-base", corpus, seed=0, fmt="glm")
    train_demo_adapter(base, pairs, root / "adapter", fmt="chatglm", native_dir=root / "native-adapter")


def cache_enabled() -> bool:
    return not os.environ.get("CI") and os.environ.get("ASMR_KIT_CACHE", "1") != "0"


def get_kit(dest: Path, *, use_cache: bool | None = None) -> Kit:
    """A kit in ``dest`` (a fresh directory), from the cache when allowed and present."""
    use_cache = cache_enabled() if use_cache is None else use_cache
    dest.mkdir(parents=True, exist_ok=True)
    models = dest / "models"
    seconds = 0.0
    cached = CACHE_ROOT / kit_hash()
    if use_cache and (cached / _COMPLETE).is_file():
        shutil.copytree(cached, models)
    else:
        start = time.perf_counter()
        build_kit_files(models)
        seconds = time.perf_counter() - start
        if use_cache:
            _store(models, cached)
    (models / _COMPLETE).unlink(missing_ok=True)
    script_dir, expected_dir = dest / "script", dest / "expected"
    script_dir.mkdir()
    expected_dir.mkdir()
    shutil.copyfile(FIXTURES / "script.txt", script_dir / "script.txt")
    shutil.copyfile(FIXTURES / "script.zh.txt", expected_dir / "script.zh.txt")
    return Kit(
        base_dir=models / "base",
        native_base_dir=models / "native-base",
        adapter_dir=models / "adapter",
        native_adapter_dir=models / "native-adapter",
        pairs=load_pairs(),
        script=script_dir / "script.txt",
        expected=expected_dir / "script.zh.txt",
        import_marker=models / "base" / IMPORT_MARKER,
        build_seconds=seconds,
    )


def _store(models: Path, cached: Path) -> None:
    """Copy a fresh build into the cache atomically (a concurrent run may be doing the same)."""
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="building-", dir=CACHE_ROOT))
    try:
        shutil.copytree(models, tmp, dirs_exist_ok=True)
        (tmp / _COMPLETE).write_text("ok\n", encoding="utf-8")
        if cached.exists():
            shutil.rmtree(cached, ignore_errors=True)  # an incomplete leftover
        tmp.rename(cached)
        for old in CACHE_ROOT.iterdir():  # kits built from older sources are never used again
            if old != cached and (old / _COMPLETE).is_file():
                shutil.rmtree(old, ignore_errors=True)
    except OSError:
        pass  # another run stored it first, or the tree is read-only: the cache is optional
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
