"""The ChatGLM2 tokenizer, rebuilt on the ``sentencepiece`` package (no remote code).

The original ``tokenization_chatglm.py`` cannot load or pad on transformers 5.x, and we never run
Python files from a model directory. The token scheme (DESIGN §5): SentencePiece ids first, then the
five specials ``[MASK] [gMASK] [sMASK] sop eop``; unk/pad 0, bos 1, eos 2; prompts start with
``[gMASK] sop``; padding on the left.
"""

from __future__ import annotations

from pathlib import Path

import sentencepiece as spm
import torch

from asmr_daemon.errors import ModelDirError

SPECIAL_TOKENS = ("[MASK]", "[gMASK]", "[sMASK]", "sop", "eop")
TOKENIZER_FILE = "tokenizer.model"


class ChatGLM2Tokenizer:
    """ChatGLM2's token scheme over a SentencePiece model."""

    def __init__(self, sp: spm.SentencePieceProcessor) -> None:
        self._sp = sp
        self._sp_size = sp.get_piece_size()
        self._special = {name: self._sp_size + i for i, name in enumerate(SPECIAL_TOKENS)}

    @classmethod
    def from_file(cls, path: Path | str) -> ChatGLM2Tokenizer:
        """Load from a SentencePiece ``tokenizer.model``."""
        try:
            sp = spm.SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError) as exc:
            raise ModelDirError(f"{path} is not a readable SentencePiece model: {exc}") from exc
        return cls(sp)

    # --- ids ------------------------------------------------------------------------------
    @property
    def pad_id(self) -> int:
        return 0  # the original uses unk as pad

    @property
    def unk_id(self) -> int:
        return 0

    @property
    def bos_id(self) -> int:
        return 1

    @property
    def eos_id(self) -> int:
        return 2

    @property
    def vocab_size(self) -> int:
        """SentencePiece pieces + the five specials (the model's embedding is padded larger)."""
        return self._sp_size + len(SPECIAL_TOKENS)

    @property
    def special_ids(self) -> dict[str, int]:
        return dict(self._special)

    @property
    def sentencepiece(self) -> spm.SentencePieceProcessor:
        return self._sp

    # --- encoding -------------------------------------------------------------------------
    def encode_prompt(self, text: str) -> list[int]:
        """``[gMASK] sop`` + the text's pieces: what the original tokenizer gives for a prompt.

        The original tokenizes with ``EncodeAsPieces`` and maps pieces back to ids, which equals
        ``sp.encode`` (dummy prefix included), then ``build_inputs_with_special_tokens`` prepends
        the two prefix tokens.
        """
        return [self._special["[gMASK]"], self._special["sop"], *self._sp.encode(text)]

    def encode_answer(self, text: str) -> list[int]:
        """An answer's pieces as in ChatGLM2 training (tokenised on its own; the caller appends eos)."""
        return list(self._sp.encode(text))

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids`` without specials, pad/unk, bos, eos; SentencePiece drops the dummy-prefix space."""
        skip = {self.pad_id, self.bos_id, self.eos_id}
        return self._sp.decode([int(i) for i in ids if 0 <= int(i) < self._sp_size and int(i) not in skip])

    def batch(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-pad encoded prompts with pad id 0: ``(input_ids, attention_mask)``, both LongTensors."""
        if not prompts:
            raise ValueError("batch() needs at least one prompt")
        ids, mask = left_pad(prompts, self.pad_id)
        return ids, mask.long()


def left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of token ids left-padded with ``pad`` to the longest: ``(ids, mask)``, the mask a bool
    tensor marking the real tokens."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = True
    return ids, mask


def load_tokenizer(model_dir: Path) -> ChatGLM2Tokenizer:
    """The tokenizer of a model directory.

    Today: a SentencePiece ``tokenizer.model`` (ChatGLM2 checkpoints, and native checkpoints written by
    ``asmr-daemon convert``, which copies it). Extension point: a native ``tokenizer.json`` would be
    handled here with a second tokenizer class offering the same methods.
    """
    path = Path(model_dir) / TOKENIZER_FILE
    if path.is_file():
        return ChatGLM2Tokenizer.from_file(path)
    raise ModelDirError(
        f"{path} not found: the model directory needs the ChatGLM2 SentencePiece tokenizer",
        "copy tokenizer.model from the original chatglm2-6b checkpoint into it",
    )
