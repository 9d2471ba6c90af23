"""peft's LoRA layers without peft's per-call bookkeeping, while the engine's decoder runs.

A peft ``lora.Linear`` checks its arguments, walks its active adapters and calls four modules
(the base layer, dropout, A, B) on every forward. On the tiny demo model that was a third of a
decoding step's CPU time (issue 14: 0.87 of 2.6 s of the engine's worker, cProfile, 3 passes of
320 lines). During a call of ``decoding.run`` each plain LoRA layer computes the same operations
in the same order directly on its weights, so every output is bitwise the one peft gives:
``base(x) + B(A(dropout(x))) * scaling``, with dropout the identity in eval mode. Any layer this
does not cover (several active adapters, DoRA and other variants, a quantized or merged base,
training) keeps peft's own forward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.nn import functional as F

Forward = Callable[[torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def lean_lora(model: Any) -> Iterator[int]:
    """Within the block, every plain LoRA linear layer of ``model`` runs lean (see the module
    docstring); yields how many do. Call on the thread that runs the model."""
    patched = [(module, forward) for module in model.modules()
               if (forward := _lean_forward(module)) is not None]
    for module, forward in patched:
        module.forward = forward
    try:
        yield len(patched)
    finally:
        for module, _ in patched:
            del module.forward


def _lean_forward(module: Any) -> Forward | None:
    """The lean forward of a peft ``lora.Linear`` as it stands now, or None to keep peft's."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    if type(module) is not LoraLinear or module.training or module.merged or "forward" in vars(module):
        return None
    base = module.base_layer
    if type(base) is not torch.nn.Linear:  # quantized or otherwise special: peft knows best
        return None
    weight, bias = base.weight, base.bias
    if module.disable_adapters:
        return lambda x: F.linear(x, weight, bias)
    active = [name for name in module.active_adapters if name in module.lora_A.keys()]
    if len(active) != 1 or active[0] in module.lora_variant:
        return None
    name = active[0]
    lora_a, lora_b = module.lora_A[name], module.lora_B[name]
    dropout, scaling = module.lora_dropout[name], module.scaling[name]
    if (type(lora_a) is not torch.nn.Linear or type(lora_b) is not torch.nn.Linear
            or not isinstance(dropout, torch.nn.Identity | torch.nn.Dropout) or dropout.training):
        return None
    a_weight, a_bias, b_weight, b_bias = lora_a.weight, lora_a.bias, lora_b.weight, lora_b.bias
    cast = getattr(module, "cast_input_dtype_enabled", True)

    def forward(x: torch.Tensor) -> torch.Tensor:
        result = F.linear(x, weight, bias)
        dtype = result.dtype
        if cast and x.dtype != a_weight.dtype:
            x = x.to(dtype=a_weight.dtype)
        result = result + F.linear(F.linear(x, a_weight, a_bias), b_weight, b_bias) * scaling
        return result.to(dtype)

    return forward
