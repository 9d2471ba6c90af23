"""transformers' repetition penalty, kept per row of a batch the decoder steps (``decoding.py``)."""

from __future__ import annotations

import torch


class RowPenalty:
    """transformers' repetition penalty, per row: the logit of a token the row holds (its prompt
    included) is divided by the row's penalty (multiplied if negative); 1.0 for rows without one,
    which changes no logit."""

    def __init__(self, rows: list[list[int]], penalties: list[float], device: torch.device) -> None:
        self.rows = [torch.tensor(r, dtype=torch.long, device=device) for r in rows]
        self.penalty = torch.tensor([[p] for p in penalties], device=device)
        self.seen: torch.Tensor | None = None

    @classmethod
    def of(cls, histories: list[list[int]], penalties: list[float | None], device: torch.device) -> RowPenalty | None:
        """The penalty of rows with these histories (prompt and tokens so far); None if no row has one."""
        if not any(penalties):
            return None
        return cls(histories, [p or 1.0 for p in penalties], device)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()  # as transformers' generate scores them
        if self.seen is None:
            self.seen = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
            for slot, ids in enumerate(self.rows):
                self.seen[slot, ids] = True
        penalised = torch.where(logits < 0, logits * self.penalty, logits / self.penalty)
        return torch.where(self.seen, penalised, logits)

    def keep(self, index: torch.Tensor) -> None:
        assert self.seen is not None  # kept rows were scored first
        self.seen, self.penalty = self.seen.index_select(0, index), self.penalty.index_select(0, index)

    def add(self, tokens: torch.Tensor) -> None:
        assert self.seen is not None
        self.seen[torch.arange(len(tokens), device=tokens.device), tokens] = True
