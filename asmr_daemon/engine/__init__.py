"""Model loading, conversion, prompts, scheduling, translation memory, checks and backends."""

import logging

# bitsandbytes (imported by peft) logs on every CPU 8-bit matmul that it casts bf16 inputs to fp16,
# and at import that an optional hub kernel package is missing (its own CPU kernels run instead).
# Neither is something a user can act on; set before anything imports it.
for _name in ("bitsandbytes.backends.cpu.ops", "bitsandbytes.autograd._functions"):
    logging.getLogger(_name).setLevel(logging.ERROR)
