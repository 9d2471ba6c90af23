"""LoRA fine-tuning: the one training core behind the ``train`` command, the demo and the test kit.

A plain PyTorch loop with AdamW instead of the HF ``Trainer``: a few dozen lines we control, no
hidden defaults (schedulers, evaluation strategies, output folders), and exactly reproducible with
the seed. What the model learns is exactly what inference asks of it:

- the prompt is ``build_prompt(...)`` with the same template the engine uses, encoded the ChatGLM2
  way (``[gMASK] sop`` + pieces);
- the answer is tokenised on its own and followed by eos (ChatGLM2's own fine-tuning scheme,
  DESIGN §10), and only the answer and eos carry loss (prompt and padding are labelled -100).

Pairs become batches in ``training_data.py``; the adapter directory is written by ``adapter_files.py``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from asmr_daemon.config import DEFAULT_TEMPLATE
from asmr_daemon.engine.prompts import validate_template
from asmr_daemon.training_data import Example, Tokenizer, TrainingPair, collate, encode_pair, split_pairs


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters. Defaults suit ChatGLM2-6B; tiny test models want a larger ``lr``."""

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj")
    epochs: int = 3
    lr: float = 2e-4
    batch_size: int = 4
    grad_accum: int = 1
    val_fraction: float = 0.0
    seed: int = 0
    template: str = DEFAULT_TEMPLATE
    max_length: int = 512
    # Learning rate over the run: "linear" decays to 0 at the last step (the usual fine-tuning
    # choice; a constant high rate makes the last epochs bounce), "cosine", or "constant".
    lr_schedule: str = "linear"
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        validate_template(self.template)
        checks = {
            "rank": self.rank >= 1,
            "alpha": self.alpha > 0,
            "dropout": 0.0 <= self.dropout < 1.0,
            "epochs": self.epochs >= 1,
            "lr": self.lr > 0,
            "batch_size": self.batch_size >= 1,
            "grad_accum": self.grad_accum >= 1,
            "val_fraction": 0.0 <= self.val_fraction < 1.0,
            "max_length": self.max_length >= 4,
            "target_modules": len(self.target_modules) > 0,
            "lr_schedule": self.lr_schedule in ("constant", "linear", "cosine"),
            "warmup_steps": self.warmup_steps >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid training setting(s): {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)}")

    def hyperparameters(self) -> dict[str, Any]:
        """JSON-friendly view for the adapter metadata (the template is recorded on its own)."""
        out = asdict(self)
        out.pop("template")
        out["target_modules"] = list(self.target_modules)
        return out


@dataclass(frozen=True)
class EpochReport:
    """Passed to ``on_epoch`` after every epoch (``epoch`` counts from 1).

    ``model`` is the peft model being trained (e.g. to decode with it); the callback may switch it to
    eval mode, training switches it back.
    """

    epoch: int
    epochs: int
    train_loss: float
    val_loss: float | None
    model: Any = None


@dataclass
class TrainResult:
    model: Any  # peft.PeftModel (typed loosely so importing this module stays cheap)
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    train_size: int = 0
    val_size: int = 0
    skipped: int = 0  # pairs longer than max_length, left out
    stopped_early: bool = False


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def train_lora(
    model: Any,
    tokenizer: Tokenizer,
    pairs: Sequence[TrainingPair],
    config: TrainConfig,
    *,
    resume_from: Path | None = None,
    progress: bool = True,
    on_epoch: Callable[[EpochReport], bool | None] | None = None,
) -> TrainResult:
    """Train a LoRA on ``pairs`` and return the peft model with per-epoch losses.

    ``model`` is a base (not peft-wrapped) ``GlmForCausalLM``; it is wrapped in place. With
    ``resume_from`` the adapter in that directory (native or ChatGLM2 names) is loaded and trained
    further, keeping its own rank, alpha and target modules. ``on_epoch`` is called after each epoch
    with an ``EpochReport``; returning True stops training there. Losses are token-weighted means over
    the answer tokens (including eos).
    """
    if not pairs:
        raise ValueError("no training pairs")
    if _is_peft(model):
        raise ValueError("train_lora() wants the base model; to continue an adapter pass resume_from=")

    examples = [encode_pair(tokenizer, p, config.template) for p in pairs]
    keep = [i for i, e in enumerate(examples) if len(e.input_ids) <= config.max_length]
    skipped = len(examples) - len(keep)
    if not keep:
        raise ValueError(f"every pair is longer than max_length={config.max_length} tokens")
    train_idx, val_idx = split_pairs([pairs[i] for i in keep], config.val_fraction, config.seed)
    train_set = [examples[keep[i]] for i in train_idx]
    val_set = [examples[keep[i]] for i in val_idx]

    _seed_everything(config.seed)
    peft_model = _wrap(model, config, resume_from)
    device = _device_of(peft_model)
    autocast = _autocast(device)
    checkpointing = device.type == "cuda" and _enable_gradient_checkpointing(peft_model)
    try:
        return _run(peft_model, tokenizer, config, train_set, val_set, skipped, device, autocast, progress, on_epoch)
    finally:
        peft_model.eval()
        if checkpointing:
            _disable_gradient_checkpointing(peft_model)


def _run(
    peft_model: Any,
    tokenizer: Tokenizer,
    config: TrainConfig,
    train_set: list[Example],
    val_set: list[Example],
    skipped: int,
    device: torch.device,
    autocast: Any,
    progress: bool,
    on_epoch: Callable[[EpochReport], bool | None] | None,
) -> TrainResult:
    """The epoch loop of ``train_lora``."""
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    order_rng = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = math.ceil(math.ceil(len(train_set) / config.batch_size) / config.grad_accum)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config, config.epochs * steps_per_epoch))

    result = TrainResult(model=peft_model, train_size=len(train_set), val_size=len(val_set), skipped=skipped)
    with _progress_bar(progress, config.epochs * steps_per_epoch) as bar:
        for epoch in range(1, config.epochs + 1):
            peft_model.train()
            order = torch.randperm(len(train_set), generator=order_rng).tolist()
            batches = [
                [train_set[i] for i in order[start : start + config.batch_size]]
                for start in range(0, len(order), config.batch_size)
            ]
            total, count = 0.0, 0
            for g in range(0, len(batches), config.grad_accum):
                group = batches[g : g + config.grad_accum]
                n_group = sum(e.n_targets for b in group for e in b)
                for batch in group:
                    inputs = {k: v.to(device) for k, v in collate(batch, tokenizer.pad_id).items()}
                    with autocast:
                        # num_items_in_batch: the loss is the group's token sum / its token count,
                        # so accumulated gradients equal one big batch's.
                        loss = peft_model(**inputs, num_items_in_batch=n_group).loss
                    loss.backward()
                    total += float(loss.detach()) * n_group
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                count += n_group
                bar.advance(f"epoch {epoch}/{config.epochs} loss {total / max(count, 1):.4f}")
            result.train_losses.append(total / max(count, 1))
            val_loss = _evaluate(peft_model, val_set, tokenizer.pad_id, config.batch_size, device) if val_set else None
            if val_loss is not None:
                result.val_losses.append(val_loss)
            if on_epoch is not None:
                report = EpochReport(epoch, config.epochs, result.train_losses[-1], val_loss, peft_model)
                if on_epoch(report):
                    result.stopped_early = epoch < config.epochs
                    break
    return result


def evaluate_loss(peft_model: Any, tokenizer: Tokenizer, pairs: Sequence[TrainingPair],
                  *, template: str = DEFAULT_TEMPLATE, batch_size: int = 8) -> float:
    """Token-weighted mean loss of the answers of ``pairs`` under the model (no training)."""
    examples = [encode_pair(tokenizer, p, template) for p in pairs]
    return _evaluate(peft_model, examples, tokenizer.pad_id, batch_size, _device_of(peft_model))


@torch.no_grad()
def _evaluate(model: Any, examples: Sequence[Example], pad_id: int, batch_size: int, device: torch.device) -> float:
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with _autocast(device):
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            n = sum(e.n_targets for e in batch)
            inputs = {k: v.to(device) for k, v in collate(batch, pad_id).items()}
            total += float(model(**inputs, num_items_in_batch=n).loss) * n
            count += n
    model.train(was_training)
    return total / max(count, 1)


def _lr_lambda(config: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """Multiplier of ``config.lr`` for optimizer step ``step`` (0-based)."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / (config.warmup_steps + 1)
        if config.lr_schedule == "constant":
            return 1.0
        progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
        if config.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1.0 - progress)

    return factor


def _is_peft(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # LoRA A initialisation and dropout draw from the global generator
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _wrap(model: Any, config: TrainConfig, resume_from: Path | None) -> Any:
    from peft import LoraConfig, set_peft_model_state_dict

    if resume_from is None:
        lora = LoraConfig(
            r=config.rank,
            lora_alpha=config.alpha,
            lora_dropout=config.dropout,
            target_modules=list(config.target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        )
        return _get_peft_model(model, lora)
    sd, cfg = _read_adapter(Path(resume_from), model.config)
    # The base recorded at training time is informational; this model is the base now.
    drop = ("auto_mapping", "base_model_name_or_path", "revision")
    lora = LoraConfig.from_peft_type(**{k: v for k, v in cfg.items() if k not in drop})
    lora.inference_mode = False
    peft_model = _get_peft_model(model, lora)
    missing = set_peft_model_state_dict(peft_model, sd)
    unexpected = getattr(missing, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"{resume_from}: adapter tensors not in the model: {unexpected[:3]}")
    return peft_model


def _get_peft_model(model: Any, lora: Any) -> Any:
    from peft import get_peft_model

    from asmr_daemon.engine.adapters import quiet_peft_warnings

    with quiet_peft_warnings():
        return get_peft_model(model, lora)


def _read_adapter(adapter_dir: Path, glm_config: Any) -> tuple[dict[str, torch.Tensor], dict]:
    """An adapter directory's tensors and config, in native names (ChatGLM2 names are converted).

    Reads through the engine's own ``read_adapter``, so a missing or broken directory raises the same
    AdapterError as when serving it.
    """
    from asmr_daemon.engine.adapters import read_adapter
    from asmr_daemon.engine.chatglm2 import convert_chatglm2_adapter

    sd, cfg, _weights, _identity = read_adapter(adapter_dir)
    return convert_chatglm2_adapter(sd, cfg, glm_config)


def _device_of(model: Any) -> torch.device:
    return next(p.device for p in model.parameters())


def _autocast(device: torch.device) -> Any:
    # bf16 autocast only on CUDA with bf16 support; on CPU the tiny models train in fp32.
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _enable_gradient_checkpointing(peft_model: Any) -> bool:
    """Trade compute for memory on GPU (a 6B model's activations do not fit next to it otherwise)."""
    base = peft_model.get_base_model()
    if not getattr(base, "supports_gradient_checkpointing", False):
        return False
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    # With frozen embeddings the checkpointed blocks would see inputs without grad.
    base.enable_input_require_grads()
    base.config.use_cache = False
    return True


def _disable_gradient_checkpointing(peft_model: Any) -> None:
    """Undo the above: the trained model may go on serving (hot adapter switch), with its KV cache."""
    base = peft_model.get_base_model()
    base.gradient_checkpointing_disable()
    base.disable_input_require_grads()
    base.config.use_cache = True


class _Bar:
    """Advances a rich task, or does nothing when progress is off."""

    def __init__(self, progress: Any = None, task: Any = None) -> None:
        self._progress, self._task = progress, task

    def advance(self, description: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, description=description)


@contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[_Bar]:
    """A rich progress bar over optimizer steps (nothing when ``enabled`` is False)."""
    if not enabled:
        yield _Bar()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from asmr_daemon.progress import make_progress

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with make_progress(Console(), *columns, unit=" steps") as progress:  # plain lines off a terminal
        yield _Bar(progress, progress.add_task("training", total=total))


